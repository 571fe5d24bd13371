"""The registry: the SQL database of estates, assets, tariffs, plans, commands and the audit log.

``models`` and ``control_room`` are the schema (on ``base``), ``db`` makes engines and
migrates them (Alembic), ``loader`` loads an estate description into it, ``lock`` is the
scheduler's lease, the other modules are the functions the rooms call, and ``location``
reads a registry URL for the backup tools. docs/registry.md describes the tables and how
to change them.
"""
