"""Schema: migrations, models/migration agreement, UTC timestamps, triggers, engine settings."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, column, insert, select, table, text, update
from sqlalchemy.exc import DatabaseError, IntegrityError

import dsa_stream.registry
from dsa_stream.config import RegistryConfig
from dsa_stream.exceptions import RegistryError
from dsa_stream.registry import JobKind, JobSpec, JobStore, make_engine, models, states, upgrade
from dsa_stream.registry.db import normalize_url, sqlite_path
from dsa_stream.registry.migrate import (
    MIGRATIONS_DIR,
    compare_type,
    head_revision,
    require_current_schema,
    schema_status,
)
from dsa_stream.registry.models import Base, job_events, jobs
from dsa_stream.registry.types import UTCDateTime, format_utc, parse_utc

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_upgrade_is_idempotent_and_at_head(engine: Engine) -> None:
    status = schema_status(engine)
    head = head_revision()
    versions = Path(dsa_stream.registry.__file__).parent / "migrations" / "versions"
    newest = max(p.name.split("_")[0] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert head == newest  # one linear history, numbered in order
    assert status.up_to_date and status.current == head
    assert upgrade(engine) == head
    require_current_schema(engine)


def test_models_match_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": compare_type, "target_metadata": Base.metadata}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], diff


def test_states_match_check_constraints() -> None:
    pairs = [
        (models.JOB_STATES, states.JobState),
        (models.GROUP_STATES, states.GroupState),
        (models.FILE_STATES, states.FileState),
        (models.WORKER_STATES, states.WorkerState),
        (models.STOP_MODES, states.StopMode),
        (models.PRODUCT_STATES, states.ProductState),
        (models.WINDOW_STATES, states.WindowState),
        (models.CALIBRATION_STATUSES, states.CalibrationStatus),
    ]
    migration = (MIGRATIONS_DIR / "versions" / "0001_initial.py").read_text()
    flat = re.sub(r"\s+", "", migration)
    for literal, enum in pairs:
        assert set(literal) == {e.value for e in enum}, enum
        assert ",".join(f'"{v}"' for v in literal) in flat, enum
    assert set(states.TERMINAL_JOB_STATES) == {"succeeded", "dead", "cancelled"}
    for terminal in states.TERMINAL_JOB_STATES:
        assert states.JOB_TRANSITIONS[terminal] == frozenset()


def test_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").exists()
    assert (MIGRATIONS_DIR / "script.py.mako").exists()
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert "registry/migrations/versions/*.py" in pyproject


def test_missing_or_old_database_is_refused(tmp_path: Path) -> None:
    missing = make_engine(f"sqlite:///{tmp_path / 'nope.sqlite3'}")
    with pytest.raises(RegistryError, match="does not exist"):
        require_current_schema(missing)
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with empty.begin() as conn:
        conn.exec_driver_sql("SELECT 1")
    with pytest.raises(RegistryError, match="db upgrade"):
        require_current_schema(empty)
    missing.dispose()
    empty.dispose()


def test_url_handling() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert sqlite_path("sqlite:////a/b.sqlite3") == Path("/a/b.sqlite3")
    with pytest.raises(RegistryError, match="unsupported"):
        normalize_url("mysql://u@h/db")


# -- UTC timestamps -----------------------------------------------------------


def test_timestamp_text_form_round_trips_and_sorts() -> None:
    rng = random.Random(3)
    values = [T0 + timedelta(seconds=rng.uniform(-1e8, 1e8)) for _ in range(200)]
    texts = [format_utc(v) for v in values]
    assert all(len(t) == 27 and t.endswith("Z") for t in texts)
    assert [parse_utc(t) for t in texts] == [v.replace(microsecond=v.microsecond) for v in values]
    assert sorted(texts) == [format_utc(v) for v in sorted(values)]
    with pytest.raises(ValueError, match="naive"):
        format_utc(datetime(2026, 1, 1))


def test_timestamps_are_aware_utc_and_order_correctly_in_sql(engine: Engine) -> None:
    """Different offsets in, UTC out; ORDER BY and < in SQL follow real time."""
    rng = random.Random(5)
    zones = [timezone(timedelta(hours=h)) for h in (-10, -3, 0, 5, 9)]
    instants = [T0 + timedelta(seconds=rng.uniform(0, 86400 * 30)) for _ in range(60)]
    store = JobStore(engine, clock=lambda: T0)
    for i, when in enumerate(instants):
        local = when.astimezone(rng.choice(zones))
        store.enqueue(JobSpec(kind=JobKind.IMAGE, dedupe_key=f"k{i}", order_key=local))
    with engine.connect() as conn:
        got = conn.execute(select(jobs.c.order_key).order_by(jobs.c.order_key)).scalars().all()
        mid = sorted(instants)[30]
        n_before = conn.execute(
            select(jobs.c.id).where(jobs.c.order_key < mid.astimezone(zones[0]))
        ).all()
    assert got == sorted(instants)
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in got)
    assert len(n_before) == 30


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive"), engine.begin() as conn:
        conn.execute(
            insert(job_events).values(
                job_id=1, at=datetime(2026, 1, 1), event="x", to_state="queued"
            )
        )
    assert UTCDateTime().process_result_value(None, engine.dialect) is None


# -- triggers and constraints ---------------------------------------------------


def _job_in_state(engine: Engine, state: str) -> int:
    store = JobStore(engine, clock=lambda: T0)
    job = store.enqueue(JobSpec(kind=JobKind.CONVERT, dedupe_key=f"d-{state}", order_key=T0))
    with engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job.job_id).values(state=state))
    return job.job_id


@pytest.mark.parametrize("terminal", ["succeeded", "dead", "cancelled"])
def test_terminal_guard_trigger_rejects_direct_updates(engine: Engine, terminal: str) -> None:
    job_id = _job_in_state(engine, terminal)
    for values in ({"state": "queued"}, {"state": "running"}, {"lease_token": 99}):
        with pytest.raises(DatabaseError, match="terminal"), engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
    with engine.connect() as conn:
        row = conn.execute(
            select(jobs.c.state, jobs.c.lease_token).where(jobs.c.id == job_id)
        ).one()
    assert (row.state, row.lease_token) == (terminal, 0)


def test_job_events_are_append_only(engine: Engine) -> None:
    JobStore(engine, clock=lambda: T0).enqueue(
        JobSpec(kind=JobKind.CONVERT, dedupe_key="e", order_key=T0)
    )
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(update(job_events).values(detail="rewritten"))


def test_partial_unique_indexes_dedupe_active_and_succeeded(engine: Engine) -> None:
    now = format_utc(T0) if engine.dialect.name == "sqlite" else T0
    raw = table(
        "jobs",
        *(column(c) for c in ("kind", "dedupe_key", "state", "order_key", "available_at")),
        *(column(c) for c in ("timeout_s", "created_at", "updated_at")),
    )
    row = {
        "kind": "convert",
        "dedupe_key": "same",
        "order_key": now,
        "available_at": now,
        "timeout_s": 1,
        "created_at": now,
        "updated_at": now,
    }
    with engine.begin() as conn:
        for state in ("dead", "dead", "cancelled", "queued", "succeeded"):
            conn.execute(insert(raw).values(state=state, **row))
    for state in ("queued", "running", "succeeded"):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(raw).values(state=state, **row))


# -- engine settings ------------------------------------------------------------


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    cfg = RegistryConfig(busy_timeout_s=7.5)
    engine = make_engine(f"sqlite:///{tmp_path / 'r.sqlite3'}", cfg)
    with engine.connect() as conn:
        pragmas = {
            p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
            for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 7500,
    }


def test_sqlite_write_transactions_begin_immediate(tmp_path: Path) -> None:
    """A second writer waits for the first one's lock instead of failing late."""
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    engine = make_engine(url, RegistryConfig(busy_timeout_s=0.2))
    upgrade(engine)
    other = make_engine(url, RegistryConfig(busy_timeout_s=0.2))
    reader = make_engine(url, RegistryConfig(busy_timeout_s=0.2), write=False)
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))  # holds the write lock (BEGIN IMMEDIATE)
        with pytest.raises(DatabaseError, match="locked"), other.begin() as c2:
            c2.execute(text("SELECT 1"))
        with reader.connect() as c3:  # deferred BEGIN: readers are never blocked
            assert c3.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
    for eng in (engine, other, reader):
        eng.dispose()


@pytest.mark.postgres
def test_postgres_session_settings(pg_url: str) -> None:
    cfg = RegistryConfig(statement_timeout_s=12, lock_timeout_s=3, idle_in_transaction_timeout_s=45)
    engine = make_engine(pg_url, cfg)
    with engine.connect() as conn:
        show = {
            s: conn.exec_driver_sql(f"SHOW {s}").scalar()
            for s in (
                "statement_timeout",
                "lock_timeout",
                "idle_in_transaction_session_timeout",
                "TimeZone",
            )
        }
    assert show == {
        "statement_timeout": "12s",
        "lock_timeout": "3s",
        "idle_in_transaction_session_timeout": "45s",
        "TimeZone": "UTC",
    }
    assert engine.pool._pre_ping  # type: ignore[attr-defined]
    reader = make_engine(pg_url, write=False)
    with reader.connect() as conn:
        assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
    engine.dispose()
    reader.dispose()
