"""The gateway's command line: ``estate edge`` and ``python -m edge.gateway_cli``."""

from __future__ import annotations

import sys
from pathlib import Path

from edge.gateway import run
from edge.settings import GatewaySettings
from estate.errors import ConfigError
from estate.logs import configure_logging


def gateway_command(meters_file: Path | None = None) -> None:
    """Run the Modbus gateway with GATEWAY_* settings until SIGTERM or SIGINT.

    ``meters_file`` overrides GATEWAY_METERS_FILE. A configuration error exits with
    status 2 and says what is wrong."""
    try:
        settings = GatewaySettings()
        if meters_file is not None:
            settings = settings.model_copy(update={"meters_file": meters_file})
        run(settings)
    except ConfigError as exc:
        print(f"estate edge: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    args = sys.argv[1:] if argv is None else argv
    gateway_command(Path(args[0]) if args else None)


if __name__ == "__main__":
    main()
