"""``estate alarms``, ``estate incidents`` and ``estate shift``: the control room for
operators at a terminal, until its pages exist. Each acts through the registry's
functions (docs/alarms.md, docs/incidents.md), with the operator's name (``--by``) and the
time of the command kept on every step, and the step's event written to the outbox in the
same transaction. The registry and the estate are the worker's: ``DISPATCH_REGISTRY_URL``
and ``DISPATCH_ESTATE_FILE``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer

alarms_app = typer.Typer(help="Active alarms: list, acknowledge, shelve (docs/alarms.md).",
                         no_args_is_help=True)
incidents_app = typer.Typer(help="Incidents and crews: list, assign, close "
                            "(docs/incidents.md).", no_args_is_help=True)
shift_app = typer.Typer(help="The shift log and the handover (docs/incidents.md).",
                        no_args_is_help=True)

By = Annotated[str, typer.Option("--by", help="Your name, kept on the step")]
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@contextmanager
def _registry() -> Iterator[tuple[Any, str]]:
    """The registry (migrated) and the estate id of the worker's settings."""
    from dispatch.registry.db import Registry
    from dispatch.settings import DispatchSettings
    from estate.model import load_estate

    settings = DispatchSettings()
    estate = load_estate(settings.estate_file).id
    registry = Registry(settings.registry_url)
    try:
        registry.migrate()
        yield registry, estate
    finally:
        registry.close()


def _step(action: Callable[[Any, str], T]) -> T:
    """Run ``action(session, estate)`` in one transaction; a refusal is a message and
    exit code 1, an unknown id exit code 2."""
    from dispatch.registry.outbox import RecordNotFound
    from estate.errors import EstateError

    try:
        with _registry() as (registry, estate), registry.writing() as session:
            return action(session, estate)
    except RecordNotFound as exc:
        typer.echo(f"estate: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (EstateError, ValueError) as exc:
        typer.echo(f"estate: {exc}", err=True)
        raise typer.Exit(1) from exc


@alarms_app.command("list")
def alarms_list() -> None:
    """Active alarms, most severe first, then oldest."""
    from dispatch.registry.alarm_board import active_alarms

    for r in _step(lambda s, estate: active_alarms(s, estate)):
        a = r.alarm
        shelf = f" until {_when(a.shelved_until)}" if a.state == "shelved" else ""
        typer.echo(f"{r.id:>6}  {a.severity:<8} {a.state + shelf:<14} {_when(a.raised_at)}  "
                   f"{a.source}  {a.rule_id}: {a.message}")


@alarms_app.command("ack")
def alarms_ack(alarm_id: int, by: By,
               note: Annotated[str, typer.Option(help="A note kept on the step")] = "",
               ) -> None:
    """Acknowledge an alarm."""
    from dispatch.registry.alarm_board import acknowledge_alarm

    r = _step(lambda s, estate: acknowledge_alarm(s, alarm_id, by, _now(), note,
                                                  estate_id=estate))
    typer.echo(f"alarm {r.id} {r.alarm.state} by {r.alarm.acknowledged_by} at "
               f"{_when(r.alarm.acknowledged_at)}")


@alarms_app.command("shelve")
def alarms_shelve(alarm_id: int, by: By,
                  reason: Annotated[str, typer.Option(help="Why it is shelved")],
                  minutes: Annotated[float, typer.Option(
                      help="For how long (at most a day)")] = 60.0) -> None:
    """Shelve an alarm out of sight for a while, with a reason."""
    from dispatch.registry.alarm_board import shelve_alarm

    now = _now()
    r = _step(lambda s, estate: shelve_alarm(s, alarm_id, by, now,
                                             now + timedelta(minutes=minutes), reason,
                                             estate_id=estate))
    typer.echo(f"alarm {r.id} shelved by {r.alarm.shelved_by} until "
               f"{_when(r.alarm.shelved_until)}")


@alarms_app.command("unshelve")
def alarms_unshelve(alarm_id: int, by: By) -> None:
    """Take an alarm off its shelf."""
    from dispatch.registry.alarm_board import unshelve_alarm

    r = _step(lambda s, estate: unshelve_alarm(s, alarm_id, by, _now(), estate_id=estate))
    typer.echo(f"alarm {r.id} {r.alarm.state}")


@incidents_app.command("list")
def incidents_list() -> None:
    """Open incidents with their crew and SLA."""
    from dispatch.incidents.model import sla_status
    from dispatch.registry.incident_desk import open_incidents

    now = _now()
    for i in _step(lambda s, estate: open_incidents(s, estate)):
        sla = sla_status(i, now)
        late = " LATE" if sla.response_breached or sla.resolution_breached else ""
        typer.echo(f"{i.id:>6}  {i.severity:<8} {i.status:<9} crew {i.crew or '-':<14} "
                   f"respond by {_when(i.respond_by)} resolve by {_when(i.resolve_by)}{late}"
                   f"  {i.title}")


@incidents_app.command("assign")
def incidents_assign(incident_id: int, crew: str, by: By) -> None:
    """Give an incident to a crew (the planner keeps it there)."""
    from dispatch.registry.incident_desk import assign_crew

    i = _step(lambda s, estate: assign_crew(s, incident_id, crew, by, _now(),
                                            estate_id=estate))
    typer.echo(f"incident {i.id} {i.status}: crew {i.crew}")


@incidents_app.command("close")
def incidents_close(incident_id: int, by: By,
                    reason: Annotated[str, typer.Option(help="Why it is closed")]) -> None:
    """Close an incident, with a reason."""
    from dispatch.registry.incident_desk import close_incident

    i = _step(lambda s, estate: close_incident(s, incident_id, by, _now(), reason,
                                               estate_id=estate))
    typer.echo(f"incident {i.id} {i.status} by {i.closed_by} at {_when(i.closed_at)}")


@shift_app.command("log")
def shift_log(
    text: Annotated[str | None, typer.Option(help="Write this entry (else: list)")] = None,
    kind: Annotated[str, typer.Option(help="event, action or open_item")] = "event",
    by: Annotated[str | None, typer.Option("--by", help="Your name (to write)")] = None,
    resolve: Annotated[int | None, typer.Option(help="Resolve this open item")] = None,
) -> None:
    """The shift log: the entries since the last accepted handover and every open item;
    with --text, write an entry; with --resolve, resolve an open item."""
    from dispatch.registry.shift_log import log_entries, resolve_log_item, write_log_entry

    if text is not None or resolve is not None:
        if not by:
            typer.echo("estate: --by is needed to write in the log", err=True)
            raise typer.Exit(2)
        who = by
        if resolve is not None:
            _step(lambda s, estate: resolve_log_item(s, resolve, who, _now(),
                                                     estate_id=estate))
            typer.echo(f"entry {resolve} resolved by {who}")
        if text is not None:
            e = _step(lambda s, estate: write_log_entry(s, estate, who, _now(), kind, text))
            typer.echo(f"entry {e.id} ({e.kind}) by {e.by} at {_when(e.at)}")
        return
    for e in _step(lambda s, estate: log_entries(s, estate)):
        mark = " [open]" if e.open else ""
        typer.echo(f"{e.id:>6}  {_when(e.at)}  {e.by:<16} {e.kind:<9}{mark} {e.text}")


@shift_app.command("handover")
def shift_handover(
    by: Annotated[str | None, typer.Option("--by", help="Your name")] = None,
    to: Annotated[str | None, typer.Option(help="Prepare the handover to this operator")]
    = None,
    accept: Annotated[int | None, typer.Option(help="Accept this handover (incoming)")]
    = None,
    note: Annotated[str, typer.Option(help="A note for the incoming operator")] = "",
) -> None:
    """Without options: the handover waiting, with everything in it. --to NAME --by NAME:
    prepare it. --accept ID --by NAME: accept it (the incoming operator only)."""
    from dispatch.registry.shift_log import accept_handover, pending_handover, prepare_handover

    if (to is not None or accept is not None) and not by:
        typer.echo("estate: --by is needed to prepare or accept a handover", err=True)
        raise typer.Exit(2)
    h: Any
    if to is not None:
        h = _step(lambda s, estate: prepare_handover(s, estate, str(by), to, _now(), note))
    elif accept is not None:
        h = _step(lambda s, estate: accept_handover(s, accept, str(by), _now(),
                                                    estate_id=estate))
    else:
        h = _step(lambda s, estate: pending_handover(s, estate))
        if h is None:
            typer.echo("no handover waiting")
            return
    _show_handover(h)


def _show_handover(h: Any) -> None:
    state = f"accepted by {h.incoming} at {_when(h.accepted_at)}" if h.accepted else \
        "waiting for the incoming operator"
    typer.echo(f"handover {h.id}: {h.outgoing} -> {h.incoming}, prepared "
               f"{_when(h.prepared_at)}, {state}")
    if h.note:
        typer.echo(f"  note: {h.note}")
    typer.echo(f"  {len(h.entries)} log entries, {len(h.alarms)} active alarms, "
               f"{len(h.incidents)} open incidents")
    for e in h.entries:
        typer.echo(f"  log      {_when(e.at)} {e.by}: {e.kind}: {e.text}")
    for a in h.alarms:
        typer.echo(f"  alarm    {a.severity} {a.state} since {_when(a.raised_at)} "
                   f"{a.source} {a.rule_id}: {a.message}")
    for i in h.incidents:
        typer.echo(f"  incident {i.id} {i.severity} {i.status} crew {i.crew or '-'} "
                   f"opened {_when(i.opened_at)}: {i.title}")
