"""The registry's real PostgreSQL (a throwaway cluster per session) for demand response."""

from tests.dispatch.registry.conftest import pg_url, postgres

__all__ = ["pg_url", "postgres"]
