"""The ``estate`` command: one subcommand per service, and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from estate.logs import configure_logging

app = typer.Typer(help="Estate Dispatch: monitoring and dispatch for an industrial estate.",
                  no_args_is_help=True, add_completion=False)


def _logging() -> None:
    configure_logging()


@app.command()
def ingest() -> None:
    """Run the ingest service (settings from INGEST_* environment variables)."""
    from ingest.__main__ import run
    from ingest.settings import IngestSettings

    _logging()
    run(IngestSettings())


@app.command()
def simulate() -> None:
    """Run the estate simulator (settings from EDGE_* environment variables)."""
    from edge.__main__ import run
    from edge.settings import EdgeSettings

    _logging()
    run(EdgeSettings())


@app.command()
def dispatch() -> None:
    """Run the dispatch worker: the scheduler and its jobs (DISPATCH_* variables)."""
    from dispatch.__main__ import run_worker
    from dispatch.settings import DispatchSettings

    _logging()
    run_worker(DispatchSettings())


@app.command()
def web() -> None:
    """Serve the operators' web view (DISPATCH_* variables)."""
    from dispatch.__main__ import run_web
    from dispatch.settings import DispatchSettings

    _logging()
    run_web(DispatchSettings())


@app.command()
def demo(
    var: Annotated[Path, typer.Option(help="Where the servers keep their data")] = Path("var"),
    port: Annotated[int, typer.Option(help="Port of the web view")] = 8000,
    mqtt_port: Annotated[int, typer.Option(help="Port of the demo's Mosquitto")] = 18830,
    influx_port: Annotated[int, typer.Option(help="HTTP port of the demo's InfluxDB")] = 18086,
    ingest_metrics_port: Annotated[int, typer.Option(
        help="Port of ingest's /metrics and /health")] = 9101,
) -> None:
    """Run everything on the sample estate: Mosquitto, InfluxDB and all services."""
    from launcher.demo import DemoPorts, run_demo

    _logging()
    code = run_demo(var.resolve(), DemoPorts(mqtt=mqtt_port, influx_http=influx_port,
                                             influx_rpc=influx_port + 2, web=port,
                                             ingest_http=ingest_metrics_port))
    raise typer.Exit(code)


@app.command("broker-credentials")
def broker_credentials(
    estate_file: Annotated[Path, typer.Option(help="The estate description (YAML)")],
    out: Annotated[Path, typer.Option(help="Directory for passwd, acl and credentials.json")],
) -> None:
    """Write Mosquitto's password and ACL files and every account's new password (0600)."""
    from estate.errors import ConfigError
    from estate.model import load_estate
    from launcher.broker_security import write_broker_security

    try:
        spec = load_estate(estate_file)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    security = write_broker_security(spec, out)
    typer.echo(f"{len(security.accounts)} accounts for estate {spec.id!r}:\n"
               f"  password_file {security.password_file}\n"
               f"  acl_file {security.acl_file}\n"
               f"  passwords in {security.credentials_file} (keep it secret)")


def main() -> None:
    app()
