"""``estate backup`` and ``estate restore``: the time series and the registry, together.

The work is done by each server's own tools, run as they are documented for a manual
backup (docs/backup.md), so a backup made by hand and one made here are the same:

- InfluxDB 1.x: ``influxd backup -portable -db DB`` over its backup service (the RPC
  address, 127.0.0.1:8088 by default) and ``influxd restore -portable -db DB``, which
  refuses to overwrite a database that exists (restore into a wiped server, or under a new
  name with ``new_database``).
- A registry on SQLite: SQLite's online backup (the services may keep running); restored
  by copying it back while the services are stopped.
- A registry on PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore --clean``.

A ``manifest.json`` says what the backup holds and when it was made.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from dispatch.registry.location import RegistryLocation, registry_location
from estate.errors import ConfigError, EstateError
from launcher.servers import find_binary

log = logging.getLogger(__name__)

MANIFEST: Final = "manifest.json"
INFLUX_DIR: Final = "influxdb"
SQLITE_FILE: Final = "registry.sqlite"
PG_DUMP_FILE: Final = "registry.dump"
# A day of readings backs up in seconds on this kind of machine; an hour means a stuck
# server, not a slow one.
TOOL_TIMEOUT_S: Final = 3600.0


class BackupError(EstateError, RuntimeError):
    """A backup or restore step failed; the message names the step and the tool's words."""


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: float
    influx_database: str | None
    registry: str | None  # "sqlite" or "postgresql"
    files: tuple[str, ...]


def _run(step: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    log.info("%s: %s", step, " ".join(argv))
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True,
                       timeout=TOOL_TIMEOUT_S, env=env)
    except subprocess.CalledProcessError as exc:
        raise BackupError(f"{step} failed: {(exc.stderr or exc.stdout).strip()[-1000:]}"
                          ) from exc


def _location(url: str) -> RegistryLocation:
    try:
        return registry_location(url)
    except ConfigError as exc:
        raise BackupError(str(exc)) from exc


def _pg(url: str) -> tuple[list[str], dict[str, str], str]:
    """libpq connection options for a registry URL, the password in the environment
    (never on a command line), and the database name."""
    parsed = _location(url)
    options = ["-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432)]
    if parsed.username:
        options += ["-U", parsed.username]
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    if not parsed.database:
        raise BackupError(f"the registry URL names no database: {parsed!r}")
    return options, env, parsed.database


def _kind(url: str) -> str:
    backend = _location(url).backend
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(f"no backup for a {backend} registry")
    return backend


def backup(out: Path, *, influx_rpc: str | None, influx_database: str,
           registry_url: str | None) -> Manifest:
    """Back up the time series (if ``influx_rpc``) and the registry (if a URL) into ``out``,
    which must not exist yet."""
    if out.exists():
        raise BackupError(f"{out} exists already: back up into a new directory")
    out.mkdir(parents=True)
    files: list[str] = []
    if influx_rpc:
        _run("influxd backup", [find_binary("influxd"), "backup", "-portable", "-host",
                                influx_rpc, "-db", influx_database, str(out / INFLUX_DIR)])
        files.append(INFLUX_DIR)
    kind = _kind(registry_url) if registry_url else None
    if registry_url and kind == "sqlite":
        source = _location(registry_url).database
        if not source or not Path(source).is_file():
            raise BackupError(f"no SQLite registry at {source!r}")
        with sqlite3.connect(source) as src, sqlite3.connect(out / SQLITE_FILE) as dst:
            src.backup(dst)
        files.append(SQLITE_FILE)
    elif registry_url:
        options, env, database = _pg(registry_url)
        _run("pg_dump", [find_binary("pg_dump"), *options, "--format=custom",
                         "--file", str(out / PG_DUMP_FILE), database], env)
        files.append(PG_DUMP_FILE)
    manifest = Manifest(time.time(), influx_database if influx_rpc else None, kind,
                        tuple(files))
    (out / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n",
                                encoding="utf-8")
    return manifest


def read_manifest(source: Path) -> Manifest:
    try:
        raw = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
        return Manifest(raw["created_at"], raw["influx_database"], raw["registry"],
                        tuple(raw["files"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{source} holds no readable {MANIFEST}: {exc}") from exc


def restore(source: Path, *, influx_rpc: str | None, registry_url: str | None,
            new_database: str | None = None) -> Manifest:
    """Restore what ``source`` holds: the time series over ``influx_rpc`` (into a server
    without that database, or as ``new_database``), the registry into ``registry_url``
    (the services stopped: a SQLite file is replaced, a PostgreSQL database cleaned)."""
    manifest = read_manifest(source)
    if influx_rpc and manifest.influx_database:
        argv = [find_binary("influxd"), "restore", "-portable", "-host", influx_rpc,
                "-db", manifest.influx_database]
        if new_database:
            argv += ["-newdb", new_database]
        _run("influxd restore", [*argv, str(source / INFLUX_DIR)])
    if registry_url and manifest.registry:
        kind = _kind(registry_url)
        if kind != manifest.registry:
            raise BackupError(f"the backup holds a {manifest.registry} registry, the target "
                              f"is {kind}")
        if kind == "sqlite":
            target = _location(registry_url).database
            if not target:
                raise BackupError("the registry URL names no SQLite file")
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            partial = Path(f"{target}.restoring")
            shutil.copyfile(source / SQLITE_FILE, partial)
            os.replace(partial, target)
        else:
            options, env, database = _pg(registry_url)
            _run("pg_restore", [find_binary("pg_restore"), *options, "--clean", "--if-exists",
                                "--no-owner", "--dbname", database,
                                str(source / PG_DUMP_FILE)], env)
    return manifest
