"""Accounts of the web view, without I/O: roles and what each may do, password hashing,
API token secrets, and the in-process limits on logins and live streams. The registry
keeps the accounts (``dispatch.registry.accounts``); the web view checks them
(``dispatch.web.auth``)."""
