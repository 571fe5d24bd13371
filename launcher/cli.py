"""The ``estate`` command: one subcommand per service, and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from estate.logs import configure_logging
from launcher.cli_webhooks import app as webhooks_app

app = typer.Typer(help="Estate Dispatch: monitoring and dispatch for an industrial estate.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(webhooks_app, name="webhooks")


def _logging() -> None:
    configure_logging()


@app.callback()
def _secrets_from_files() -> None:
    """Read ``X_SECRET_FILE`` variables into ``X`` before any command builds its settings."""
    from estate.errors import ConfigError
    from launcher.secret_files import apply_secret_files

    try:
        apply_secret_files()
    except ConfigError as exc:
        typer.echo(f"estate: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def ingest() -> None:
    """Run the ingest service (settings from INGEST_* environment variables)."""
    from ingest.__main__ import run
    from ingest.settings import IngestSettings

    _logging()
    run(IngestSettings())


@app.command()
def simulate(
    meters: Annotated[int | None, typer.Option(
        help="Simulate a synthetic estate of this many meters instead of the estate file")
    ] = None,
    modbus_port: Annotated[int | None, typer.Option(
        help="Serve the electrical meters as Modbus TCP servers from this port up")] = None,
    publish: Annotated[bool | None, typer.Option(
        "--publish/--no-publish", help="Publish readings over MQTT")] = None,
) -> None:
    """Run the estate simulator (settings from EDGE_* environment variables)."""
    from edge.__main__ import run
    from edge.settings import EdgeSettings

    _logging()
    given: dict[str, object] = {"meters": meters, "modbus_port": modbus_port,
                                "publish": publish}
    run(EdgeSettings.model_validate({k: v for k, v in given.items() if v is not None}))


@app.command()
def backfill(
    days: Annotated[float, typer.Option(help="Days of history before now")] = 30,
    step_s: Annotated[int, typer.Option(help="Seconds between simulated readings")] = 900,
    meters: Annotated[int | None, typer.Option(
        help="Backfill a synthetic estate of this many meters instead of the estate file")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the simulation")] = None,
    estate_file: Annotated[Path | None, typer.Option(
        help="The estate description (YAML)")] = None,
) -> None:
    """Write simulated history into InfluxDB (EDGE_* variables; EDGE_BACKFILL_INFLUX__*)."""
    from edge.backfill import backfill_command

    _logging()
    result = backfill_command(days, step_s, estate_file=estate_file, meters=meters, seed=seed)
    typer.echo(f"{result.steps:,} steps, {result.readings:,} readings in {result.lines:,} lines")


@app.command()
def edge(
    meters: Annotated[Path | None, typer.Option(
        help="The meters file (overrides GATEWAY_METERS_FILE)")] = None,
) -> None:
    """Run the Modbus gateway: poll meters, store and forward to MQTT (GATEWAY_* variables)."""
    from edge.gateway_cli import gateway_command

    _logging()
    gateway_command(meters)


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
    dispatch_metrics_port: Annotated[int, typer.Option(
        help="Port of the dispatch worker's /metrics and /health")] = 9102,
    simulator_metrics_port: Annotated[int, typer.Option(
        help="Port of the simulator's /metrics and /health")] = 9103,
    supervisor_port: Annotated[int, typer.Option(
        help="Port of the supervisor's /status, /health and /metrics (0: none)")] = 9110,
) -> None:
    """Run everything on the sample estate: Mosquitto, InfluxDB and all services, each
    restarted if it dies."""
    from launcher.demo import DemoPorts, run_demo

    _logging()
    code = run_demo(var.resolve(), DemoPorts(mqtt=mqtt_port, influx_http=influx_port,
                                             influx_rpc=influx_port + 2, web=port,
                                             ingest_http=ingest_metrics_port,
                                             dispatch_http=dispatch_metrics_port,
                                             simulator_http=simulator_metrics_port,
                                             supervisor=supervisor_port))
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


@app.command("stack-secrets")
def stack_secrets(
    out: Annotated[Path, typer.Option(help="Directory of the stack's secrets")] = Path(
        "secrets"),
    estate_file: Annotated[Path | None, typer.Option(
        help="The estate description (YAML); default DISPATCH_ESTATE_FILE")] = None,
    broker_name: Annotated[list[str] | None, typer.Option(
        help="A name clients dial the broker by (repeat); default mosquitto, localhost")
    ] = None,
) -> None:
    """Write the compose stack's missing secrets: broker accounts, TLS, service passwords
    (the stack's one-shot setup service runs this; docs/deploy.md)."""
    from dispatch.settings import DispatchSettings
    from estate.errors import ConfigError
    from estate.model import load_estate
    from launcher.stack_secrets import write_stack_secrets

    _logging()
    try:
        spec = load_estate(estate_file or DispatchSettings().estate_file)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    names = tuple(broker_name) if broker_name else ("mosquitto", "localhost")
    result = write_stack_secrets(spec, out, broker_names=names)
    typer.echo(f"{len(result.written)} files written under {out}"
               + "".join(f"\n  {p}" for p in result.written))


@app.command("backup")
def backup_command(
    out: Annotated[Path, typer.Argument(help="A new directory for the backup")],
    influx_rpc: Annotated[str | None, typer.Option(
        help="InfluxDB's backup service, host:port (its bind-address); empty: no time "
             "series")] = "127.0.0.1:8088",
    influx_database: Annotated[str | None, typer.Option(
        help="Database to back up; default DISPATCH_INFLUX__DATABASE")] = None,
    registry_url: Annotated[str | None, typer.Option(
        help="Registry to back up; default DISPATCH_REGISTRY_URL")] = None,
) -> None:
    """Back up the time series and the registry (docs/backup.md)."""
    from dispatch.settings import DispatchSettings
    from launcher.backup import BackupError, backup

    _logging()
    settings = DispatchSettings()
    try:
        manifest = backup(out, influx_rpc=influx_rpc or None,
                          influx_database=influx_database or settings.influx.database,
                          registry_url=registry_url or settings.registry_url)
    except BackupError as exc:
        typer.echo(f"estate backup: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"backed up {', '.join(manifest.files)} into {out}")


@app.command("restore")
def restore_command(
    source: Annotated[Path, typer.Argument(help="A directory made by estate backup")],
    influx_rpc: Annotated[str | None, typer.Option(
        help="InfluxDB's backup service, host:port; empty: leave the time series")
    ] = "127.0.0.1:8088",
    new_database: Annotated[str | None, typer.Option(
        help="Restore the time series under this database name instead")] = None,
    registry_url: Annotated[str | None, typer.Option(
        help="Registry to restore into; default DISPATCH_REGISTRY_URL")] = None,
) -> None:
    """Restore a backup: stop the services first (docs/backup.md)."""
    from dispatch.settings import DispatchSettings
    from launcher.backup import BackupError, restore

    _logging()
    try:
        manifest = restore(source, influx_rpc=influx_rpc or None, new_database=new_database,
                           registry_url=registry_url or DispatchSettings().registry_url)
    except BackupError as exc:
        typer.echo(f"estate restore: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"restored {', '.join(manifest.files)} from {source}")


def _user_commands() -> typer.Typer:
    from launcher.user_cli import app as user_app

    return user_app


app.add_typer(_user_commands(), name="user")

registry_app = typer.Typer(help="The registry database (docs/registry.md).",
                           no_args_is_help=True)
app.add_typer(registry_app, name="registry")


@registry_app.command("load")
def registry_load(
    estate_file: Annotated[Path | None, typer.Argument(
        help="The estate description (YAML); default DISPATCH_ESTATE_FILE")] = None,
    url: Annotated[str | None, typer.Option(
        help="Registry URL; default DISPATCH_REGISTRY_URL")] = None,
) -> None:
    """Bring the registry's schema up to date and load an estate description into it."""
    from dispatch.registry.loader import registry_command
    from dispatch.settings import DispatchSettings
    from estate.errors import ConfigError

    _logging()
    settings = DispatchSettings()
    try:
        summary = registry_command(url or settings.registry_url,
                                   estate_file or settings.estate_file)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(str(summary))


forecast_app = typer.Typer(help="Load forecasts per facility and for the estate.",
                           no_args_is_help=True)
app.add_typer(forecast_app, name="forecast")


@forecast_app.command("backtest")
def forecast_backtest(
    days: Annotated[int, typer.Option(help="Held-out days: the last complete local days")] = 14,
    issue_hours_before: Annotated[int, typer.Option(
        help="Issue each day-ahead forecast this many hours before local midnight")] = 0,
    estate_file: Annotated[Path | None, typer.Option(
        help="The estate description (YAML); default DISPATCH_ESTATE_FILE")] = None,
) -> None:
    """Backtest the load forecasts: MAPE and WAPE against the seasonal-naive baseline."""
    from dispatch.planning.forecasts import backtest_command
    from dispatch.settings import DispatchSettings

    _logging()
    settings = DispatchSettings()
    backtest_command(estate_file or settings.estate_file, settings.influx, days,
                     issue_hours_before=issue_hours_before, settings=settings.forecast)


from launcher.dr_cli import dr_app, statements_app  # noqa: E402

app.add_typer(dr_app, name="dr")
app.add_typer(statements_app, name="statements")


def main() -> None:
    app()
