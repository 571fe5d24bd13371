"""A registry for fast tests: a real SQLite file, migrated by Alembic, with the sample
estate loaded (no server: SQLite is a file)."""

from __future__ import annotations

from pathlib import Path

from dispatch.registry.db import Registry
from dispatch.registry.loader import load_estate_into
from estate.model import SAMPLE_ESTATE, EstateSpec, load_estate

SPEC: EstateSpec = load_estate(SAMPLE_ESTATE)


def sample_registry(directory: Path) -> Registry:
    registry = Registry(f"sqlite:///{directory / 'registry.sqlite'}")
    registry.migrate()
    load_estate_into(registry, SPEC)
    return registry
