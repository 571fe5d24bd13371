"""A registry for fast tests: a real SQLite file, migrated by Alembic, with the sample
estate loaded (no server: SQLite is a file). Migrated once per test process and copied
for each test, which then has a database of its own."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from dispatch.registry.db import Registry
from dispatch.registry.loader import load_estate_into
from estate.model import SAMPLE_ESTATE, EstateSpec, load_estate

SPEC: EstateSpec = load_estate(SAMPLE_ESTATE)
_template: Path | None = None


def _migrated_template() -> Path:
    global _template
    if _template is None:
        directory = Path(tempfile.mkdtemp(prefix="registry-template-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = directory / "registry.sqlite"
        registry = Registry(f"sqlite:///{path}")
        registry.migrate()
        load_estate_into(registry, SPEC)
        registry.close()
        _template = path
    return _template


def sample_registry(directory: Path) -> Registry:
    """A registry of its own in ``directory``, at the newest schema, the sample estate in it."""
    path = directory / "registry.sqlite"
    shutil.copyfile(_migrated_template(), path)
    return Registry(f"sqlite:///{path}")
