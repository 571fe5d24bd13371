"""``estate dr ...`` and ``estate statements ...``: demand-response orders and the tenants'
monthly statements from the command line (the web view's `/dr` page and its routes call
the same functions). Settings from DISPATCH_* variables."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

dr_app = typer.Typer(help="Demand-response orders (docs/demand-response.md).",
                     no_args_is_help=True)
statements_app = typer.Typer(help="The tenants' monthly statements (docs/demand-response.md).",
                             no_args_is_help=True)

By = Annotated[str, typer.Option("--by", help="Who decides (recorded with the order)")]


@contextmanager
def _demand_response() -> Iterator[object]:
    """A ``DemandResponse`` over the configured registry and store; our errors as exit 2."""
    from adapters.influx import make_store
    from dispatch.dr.events import DemandResponse
    from dispatch.jobs.metered import RollupMeterData
    from dispatch.registry.db import Registry
    from dispatch.settings import DispatchSettings
    from estate.errors import EstateError
    from estate.model import load_estate

    settings = DispatchSettings()
    registry = Registry(settings.registry_url)
    store = make_store(settings.influx)
    try:
        registry.migrate()
        store.ensure_database()
        spec = load_estate(settings.estate_file)
        yield DemandResponse(registry, RollupMeterData(
            store, settings.rollups, manage_policies=settings.influx.api == "v1"), spec.id)
    except EstateError as exc:
        typer.echo(f"estate: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        store.close()
        registry.close()


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{text!r} needs a UTC offset (+02:00, Z)")
    return moment


@dr_app.command("add")
def add(
    start: Annotated[str, typer.Option(help="Window start, ISO 8601 with offset")],
    end: Annotated[str, typer.Option(help="Window end, ISO 8601 with offset")],
    cap: Annotated[float | None, typer.Option(help="Import at most this many kW")] = None,
    cut: Annotated[float | None, typer.Option(help="Cut this many kW below baseline")] = None,
    payment: Annotated[float, typer.Option(help="Paid per kWh delivered")] = 0.0,
    penalty: Annotated[float, typer.Option(help="Charged per kWh short")] = 0.0,
    programme: Annotated[str, typer.Option(help="The programme's name")] = "demand response",
    currency: Annotated[str, typer.Option(help="Currency of the rates")] = "EUR",
    opt: Annotated[str, typer.Option(help="in, out or pending")] = "in",
    by: By = "operator",
) -> None:
    """Enter an order (a cap or a cut) by hand; opted in, it is split at once."""
    from dispatch.dr.events import DemandResponse, receive, split
    from dispatch.dr.orders import OrderDraft, Programme

    if (cap is None) == (cut is None):
        raise typer.BadParameter("give exactly one of --cap and --cut")
    draft = OrderDraft("cap" if cap is not None else "cut", float(cap if cap is not None
                                                                   else cut or 0.0),
                       _when(start), _when(end), Programme(programme, payment, penalty,
                                                           currency))
    with _demand_response() as dr:
        assert isinstance(dr, DemandResponse)
        now = datetime.now(UTC)
        order, _ = receive(dr, draft, by, now, opt=opt)
        typer.echo(f"{order.describe()}: opted {order.opt}")
        if order.opt == "in":
            result = split(dr, order.id, now)
            _print_split(result.by_facility(), float(result.unassigned_kw.max(initial=0.0)))


def _print_split(shares: Mapping[str, object], unassigned: float) -> None:
    from dispatch.dr.split import Share

    for facility, share in shares.items():
        assert isinstance(share, Share)
        typer.echo(f"  {facility:<16} up to {share.kw.max(initial=0.0):>9,.1f} kW "
                   f"(weight {share.weight:,.1f}, season factor {share.season_factor:.2f})")
    typer.echo(f"  unassigned: up to {unassigned:,.1f} kW")


@dr_app.command("list")
def list_orders() -> None:
    """The estate's orders."""
    from dispatch.dr.events import DemandResponse
    from dispatch.dr.records import order_of
    from dispatch.registry import dr_book

    with _demand_response() as dr:
        assert isinstance(dr, DemandResponse)
        with dr.registry.reading() as session:
            for record in dr_book.orders(session, dr.estate_id):
                order = order_of(record)
                typer.echo(f"{order.describe()}; {order.status}, opted {order.opt}")


@dr_app.command("opt")
def opt_command(order_id: int, decision: Annotated[str, typer.Argument(help="in or out")],
                by: By = "operator") -> None:
    """Opt into an order or out of it (an OpenADR order's VTN is told by the worker)."""
    from dispatch.dr.events import DemandResponse, decide

    with _demand_response() as dr:
        assert isinstance(dr, DemandResponse)
        order = decide(dr, order_id, decision, by, datetime.now(UTC))
        typer.echo(f"{order.describe()}: opted {order.opt} by {by}")


@dr_app.command("show")
def show(order_id: int) -> None:
    """An order, each tenant's part (share, baseline, settlement) and the plan's shortfall."""
    from dispatch.dr.events import DemandResponse, get
    from dispatch.registry import dr_book

    with _demand_response() as dr:
        assert isinstance(dr, DemandResponse)
        order = get(dr, order_id)
        typer.echo(f"{order.describe()}; {order.status}, opted {order.opt}")
        with dr.registry.reading() as session:
            record = dr_book.order(session, dr.estate_id, order_id)
            parts = dr_book.participations(session, order_id)
        for p in parts:
            settled = ("" if p.settled_at is None else
                       f"; delivered {p.delivered_kwh:,.1f} kWh, paid {p.payment:,.2f}, "
                       f"penalty {p.penalty:,.2f}{', SHORT' if p.fell_short else ''}")
            typer.echo(f"  {p.facility_id:<16} {p.priority:<9} asked {p.requested_kwh:,.1f} kWh "
                       f"(baseline {p.baseline.get('method')} x={p.baseline.get('x')} "
                       f"y={p.baseline.get('y')}){settled}")
        for facility, assets in record.detail.get("plan", {}).get("setpoints", {}).items():
            for asset, kw in assets.items():
                typer.echo(f"  {facility:<16} {asset} planned {kw} kW")
        for step in record.detail.get("plan", {}).get("short_steps", []):
            at = datetime.fromtimestamp(step["time_ms"] / 1000, UTC).isoformat()
            typer.echo(f"  short {step['short_kw']:,.1f} kW at {at}: {step['by_tenant']}")


@dr_app.command("settle")
def settle_command(order_id: int) -> None:
    """Settle an order whose window has ended."""
    from dispatch.dr.events import DemandResponse
    from dispatch.dr.settle import settle

    with _demand_response() as dr:
        assert isinstance(dr, DemandResponse)
        for r in settle(dr, order_id, datetime.now(UTC)):
            typer.echo(f"  {r.facility:<16} asked {r.requested_kwh:,.1f} kWh, delivered "
                       f"{r.delivered_kwh:,.1f} kWh: +{r.payment:,.2f} -{r.penalty:,.2f}"
                       f"{'  SHORT' if r.fell_short else ''}")


@dr_app.command("contract")
def contract(
    facility: str,
    priority: Annotated[str, typer.Option(help="critical, standard or flexible")] = "standard",
    flexible_kw: Annotated[float | None, typer.Option(help="kW it agreed it can shed")] = None,
    rule: Annotated[str, typer.Option(help="Shared assets: peak, energy, equal, fixed")] = "peak",
    weight: Annotated[float, typer.Option(help="Weight under the fixed rule")] = 1.0,
) -> None:
    """Set a tenant's demand-response and shared-asset terms."""
    from dispatch.dr.events import DemandResponse
    from dispatch.registry import dr_book

    with _demand_response() as dr:
        assert isinstance(dr, DemandResponse)
        with dr.registry.writing() as session:
            dr_book.set_contract(session, dr.estate_id, dr_book.ContractRecord(
                facility, priority, flexible_kw, rule, weight), datetime.now(UTC))
        typer.echo(f"{facility}: {priority}, flexible {flexible_kw} kW, shared assets by {rule}")


@dr_app.command("price")
def price(utility: Annotated[str, typer.Argument(help="water or gas")],
          per_m3: Annotated[float, typer.Argument(help="Price per m3")]) -> None:
    """Set the price per m³ of water or gas billed to the tenants."""
    from dispatch.dr.events import DemandResponse
    from dispatch.registry import dr_book

    with _demand_response() as dr:
        assert isinstance(dr, DemandResponse)
        with dr.registry.writing() as session:
            dr_book.set_utility_price(session, dr.estate_id, utility, per_m3, datetime.now(UTC))
        typer.echo(f"{utility}: {per_m3} per m3")


@statements_app.command("month")
def month_command(
    month: Annotated[str, typer.Argument(help="YYYY-MM")],
    out: Annotated[Path, typer.Option(help="Directory of the CSV and PDF")] = Path("statements"),
) -> None:
    """Every tenant's statement of a month, as CSV and PDF, and the estate's bill."""
    from dispatch.dr.billing import estate_statements
    from dispatch.dr.events import DemandResponse
    from dispatch.dr.statement_files import write_statements
    from dispatch.registry.estate_store import planning_inputs

    with _demand_response() as dr:
        assert isinstance(dr, DemandResponse)
        statements, bill = estate_statements(dr.registry, dr.metered, dr.estate_id, month)
        name = planning_inputs(dr.registry, dr.estate_id).estate.name
        csv_path, pdf_path = write_statements(statements, name, out, month)
        for s in statements:
            typer.echo(f"  {s.facility:<16} {s.total:>12,.2f} {s.currency}")
        total = sum(s.total for s in statements)
        typer.echo(f"tenants {total:,.2f}; estate's bill from its meters {bill.total:,.2f}")
        typer.echo(f"wrote {csv_path} and {pdf_path}")
