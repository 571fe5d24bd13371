"""``NAME_SECRET_FILE`` environment variables: a setting's value read from a file.

The compose stack hands secrets to the services as files (compose ``secrets``, mounted
under ``/run/secrets``), never as environment variables, which ``docker inspect`` and
every child process would see. ``INGEST_MQTT__PASSWORD_SECRET_FILE=/run/secrets/mqtt_ingest``
sets ``INGEST_MQTT__PASSWORD`` to that file's content (a final newline dropped), before
the service builds its settings: the services need not know. The PostgreSQL and Grafana
images do the same with ``_FILE``; ours say ``_SECRET_FILE`` because settings such as
``INGEST_MQTT__CA_FILE`` and ``DISPATCH_ESTATE_FILE`` already end in ``_FILE``.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Final

from estate.errors import ConfigError

SUFFIX: Final = "_SECRET_FILE"
# Only the services' own settings: another program's *_FILE variable is not ours to read.
PREFIXES: Final = ("INGEST_", "EDGE_", "GATEWAY_", "DISPATCH_")
# A secret is a password, a key or a URL; a larger file is a mistake (a path to the
# wrong file), and reading it whole would cost memory for nothing.
MAX_BYTES: Final = 64 * 1024


def apply_secret_files(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set each ``X`` named by an ``X_SECRET_FILE`` variable; return the names set.

    Raises ConfigError when a file cannot be read, is too large, or ``X`` is set too.
    """
    env = os.environ if environ is None else environ
    applied = []
    for name in sorted(env):
        if not (name.endswith(SUFFIX) and name.startswith(PREFIXES)):
            continue
        target = name[:-len(SUFFIX)]
        if target in env:
            raise ConfigError(f"both {target} and {name} are set; set one of them")
        path = Path(env[name])
        try:
            with path.open("rb") as f:
                data = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from exc
        if len(data) > MAX_BYTES:
            raise ConfigError(f"{name}: {path} is larger than {MAX_BYTES} bytes")
        try:
            value = data.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{name}: {path} is not UTF-8 text") from exc
        env[target] = value
        del env[name]
        applied.append(target)
    return applied
