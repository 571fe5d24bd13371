"""The registry: the SQL database of estates, assets, tariffs, plans, commands and the audit log.

``models`` is the schema, ``db`` makes engines and migrates them (Alembic), ``loader`` loads
an estate description into it, ``lock`` and ``jobstore`` are the scheduler's lease and job
store. docs/registry.md describes the tables and how to change them.
"""
