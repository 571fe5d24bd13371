"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from dispatch.registry.db import (
    alembic_config,
    downgrade,
    make_engine,
    session_factory,
    upgrade,
)
from dispatch.registry.models import (
    AuditRow,
    Base,
    CommandRow,
    EstateRow,
    FacilityRow,
    MeterRow,
    PlanRow,
)


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrated_schema_equals_the_models(engine: Engine) -> None:
    upgrade(engine)
    assert _diff(engine) == []
    assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | {
        "alembic_version"}
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == head


def test_upgrade_twice_and_downgrade_to_empty(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine)
    assert _diff(engine) == []


def test_upgrade_by_url_makes_the_sqlite_directory(tmp_path: Path) -> None:
    path = tmp_path / "var" / "registry.sqlite"
    upgrade(f"sqlite:///{path}")
    assert path.exists()


def test_times_come_back_aware_in_utc_and_naive_times_are_refused(engine: Engine) -> None:
    upgrade(engine)
    athens = timezone(timedelta(hours=2))
    sent = datetime(2026, 3, 1, 14, 30, tzinfo=athens)
    with session_factory(engine).begin() as session:
        session.add(AuditRow(at=sent, actor="operator", action="approve",
                               subject_type="plan", subject_id="1", detail={"k": [1, 2]}))
    with session_factory(engine)() as session:
        entry = session.scalars(select(AuditRow)).one()
        assert entry.at == sent
        assert entry.at.tzinfo is not None
        assert entry.at.utcoffset() == timedelta(0)
        assert entry.at.hour == 12
        assert entry.detail == {"k": [1, 2]}
    with pytest.raises(Exception, match="naive datetime"), \
            session_factory(engine).begin() as session:
        session.add(AuditRow(at=datetime(2026, 3, 1), actor="x", action="y",
                               subject_type="z", subject_id="1"))


def test_foreign_keys_and_checks_are_enforced(engine: Engine) -> None:
    upgrade(engine)
    factory = session_factory(engine)
    with pytest.raises(IntegrityError), factory.begin() as session:
        session.add(MeterRow(estate_id="nowhere", facility_id="f", id="m", kind="electricity"))
    now = datetime.now(UTC)
    with factory.begin() as session:
        session.add(EstateRow(id="demo", name="Demo", timezone="UTC", contracted_capacity_kw=1))
        session.add(FacilityRow(estate_id="demo", id="f", name="F"))
    with pytest.raises(IntegrityError), factory.begin() as session:
        session.add(PlanRow(estate_id="demo", horizon_start=now, horizon_end=now,
                         step_minutes=15, status="maybe"))
    with factory.begin() as session:
        plan = PlanRow(estate_id="demo", horizon_start=now, horizon_end=now, step_minutes=15,
                    setpoints={"battery": [1.0, -2.5]})
        session.add(plan)
        session.flush()
        session.add(CommandRow(id="c1", estate_id="demo", facility_id="f", device_id="d",
                            action="set", params={"kw": 5}, plan_id=plan.id,
                            status="pending", requested_by="planner",
                            deadline_at=now + timedelta(minutes=1)))
    with factory.begin() as session:
        session.delete(session.get(PlanRow, plan.id))
    with factory() as session:
        command = session.get(CommandRow, "c1")
        assert command is not None
        assert command.plan_id is None  # the command outlives its plan
        assert command.params == {"kw": 5}


def _migrate(url: str, start: Any, failures: Any) -> None:
    start.wait(30)
    try:
        upgrade(url)
    except Exception as exc:  # what the test counts, with its text
        failures.put(f"{type(exc).__name__}: {exc}")


def test_processes_starting_together_migrate_one_at_a_time(db_url: str) -> None:
    """The web view and the worker both migrate at start; neither may fail for the other."""
    ctx = mp.get_context("spawn")
    start, failures = ctx.Event(), ctx.Queue()
    processes = [ctx.Process(target=_migrate, args=(db_url, start, failures))
                 for _ in range(4)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    problems = []
    while not failures.empty():
        problems.append(failures.get())
    assert problems == []
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert len(versions) == 1
    finally:
        engine.dispose()
