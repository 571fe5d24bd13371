"""Adapters: one module per outside system, each implementing a port of ``estate.ports``
or wrapping one client library, and translating its errors into ``estate.errors`` in one
place."""
