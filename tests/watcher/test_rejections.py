"""The rejected_files table (migration 0002): idempotent per version, resolved by a valid
version, superseded, removed; schema agreement; queries and stats. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from dsa_stream.registry import FileFacts, JobStore, make_engine, models, upgrade
from dsa_stream.registry.migrate import (
    MIGRATIONS_DIR,
    alembic_config,
    compare_type,
    current_revision,
    head_revision,
)
from dsa_stream.registry.models import Base, input_files, rejected_files
from dsa_stream.registry.queries import count_open_rejections, list_rejected_files
from dsa_stream.registry.rejections import (
    RejectionFacts,
    RejectionState,
    close_rejection,
    known_paths,
    record_rejection,
    register_resolving,
)
from dsa_stream.registry.stats import registry_stats

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NAME = "2026-01-01T00:00:00_sb03.hdf5"


@pytest.fixture
def store(db_url: str) -> Any:
    now = [T0]
    s = JobStore(make_engine(db_url), clock=lambda: now[0])
    yield s
    s.close()


def rejection(**kw: Any) -> RejectionFacts:
    base: dict[str, Any] = {
        "root_id": "incoming",
        "rel_path": NAME,
        "size": 100,
        "mtime_ns": 1,
        "checksum": "abc",
        "reason": "cannot open as HDF5 (truncated file)",
        "retryable": True,
        "attempts": 3,
    }
    base.update(kw)
    return RejectionFacts(**base)


def facts(sb: int = 3, **kw: Any) -> FileFacts:
    base: dict[str, Any] = {
        "root_id": "incoming",
        "rel_path": f"2026-01-01T00:00:00_sb{sb:02d}.hdf5",
        "size": 1000 + sb,
        "mtime_ns": 2,
        "checksum": f"{sb:016x}",
        "obs_time": T0,
        "subband": sb,
        "group_key": "2026-01-01T00:00:00",
        "dec_deg": 54.6,
    }
    base.update(kw)
    return FileFacts(**base)


def rows(store: JobStore) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(rejected_files).order_by(rejected_files.c.id)))


def test_schema_is_at_head_and_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision() >= "0002"
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": compare_type, "target_metadata": Base.metadata}
            )
            assert compare_metadata(ctx, Base.metadata) == []
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
        assert current_revision(engine) == "0001"
        assert upgrade(engine) == head_revision()
    finally:
        engine.dispose()


def test_states_agree_with_the_migration() -> None:
    assert set(models.REJECTION_STATES) == {s.value for s in RejectionState}
    text = (MIGRATIONS_DIR / "versions" / "0002_rejected_files.py").read_text()
    flat = re.sub(r"\s+", "", text)
    assert "stateIN(" + ",".join(f"'{s}'" for s in models.REJECTION_STATES) + ")" in flat


def test_recording_is_idempotent_per_version(store: JobStore) -> None:
    first = record_rejection(store, rejection())
    again = record_rejection(store, rejection(reason="other words", attempts=9))
    assert first.created and not again.created and again.rejection_id == first.rejection_id
    (row,) = rows(store)
    assert row.state == "rejected" and row.reason.startswith("cannot open")
    assert row.retryable is True and row.attempts == 3 and row.checksum == "abc"
    assert row.rejected_at == T0 and row.first_seen_at == T0 and row.resolved_at is None


def test_a_newer_invalid_version_supersedes_the_open_one(store: JobStore) -> None:
    first = record_rejection(store, rejection())
    second = record_rejection(store, rejection(size=200, mtime_ns=5, retryable=False))
    assert second.created and second.superseded == (first.rejection_id,)
    old, new = rows(store)
    assert (old.state, new.state) == ("superseded", "rejected")
    assert "newer version" in old.resolution
    with store.engine.connect() as conn:
        assert count_open_rejections(conn) == 1
        listed = list_rejected_files(conn)
        every = list_rejected_files(conn, state=None)
    assert [r.id for r in listed] == [new.id] and {r.id for r in every} == {old.id, new.id}


def test_at_most_one_open_rejection_per_path(store: JobStore) -> None:
    record_rejection(store, rejection())
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(
            rejected_files.insert().values(
                root_id="incoming",
                rel_path=NAME,
                size=1,
                mtime_ns=9,
                reason="x",
                retryable=False,
                state="rejected",
                first_seen_at=T0,
                rejected_at=T0,
                updated_at=T0,
            )
        )


def test_a_valid_version_resolves_the_rejection(store: JobStore) -> None:
    rej = record_rejection(store, rejection())
    result, resolved = register_resolving(store, facts())
    assert result.outcome == "registered" and resolved == (rej.rejection_id,)
    (row,) = rows(store)
    assert row.state == "resolved" and row.resolved_file_id == result.file_id
    assert row.resolved_at == T0 and "registered" in row.resolution
    _, none = register_resolving(store, facts())
    assert none == ()


def test_removed_files_close_their_rejection_and_reappearing_reopens_it(store: JobStore) -> None:
    rej = record_rejection(store, rejection())
    assert close_rejection(store, "incoming", NAME) == (rej.rejection_id,)
    assert rows(store)[0].state == "removed"
    back = record_rejection(store, rejection())  # the same bytes copied back
    assert back.created and back.rejection_id == rej.rejection_id
    assert rows(store)[0].state == "rejected" and rows(store)[0].resolution is None


def test_an_invalid_replacement_quarantines_the_registered_version(store: JobStore) -> None:
    reg, _ = register_resolving(store, facts())
    res = record_rejection(store, rejection(rel_path=facts().rel_path, size=5, mtime_ns=99))
    assert res.quarantined_file_id == reg.file_id
    with store.engine.connect() as conn:
        state, reason = conn.execute(
            select(input_files.c.state, input_files.c.reason).where(input_files.c.id == reg.file_id)
        ).one()
        n_present = conn.execute(select(models.groups.c.n_present)).scalar_one()
    assert state == "quarantined" and "replaced on disk" in reason and n_present == 0


def test_known_paths_reports_held_versions(store: JobStore) -> None:
    register_resolving(store, facts(sb=1))
    record_rejection(store, rejection())
    paths = [facts(sb=1).rel_path, NAME, "unknown.hdf5"]
    with store.engine.connect() as conn:
        known = known_paths(conn, "incoming", paths)
    assert set(known) == {facts(sb=1).rel_path, NAME}
    assert known[facts(sb=1).rel_path].holds(1001, 2)
    assert not known[facts(sb=1).rel_path].holds(1001, 3)
    assert known[NAME].holds(100, 1) and known[NAME].input_file is None


def test_stats_health_counts_open_rejections(store: JobStore) -> None:
    with store.engine.connect() as conn:
        assert registry_stats(conn, now=T0).files_rejected == 0
    record_rejection(store, rejection())
    with store.engine.connect() as conn:
        stats = registry_stats(conn, now=T0 + timedelta(seconds=1))
    assert stats.files_rejected == 1 and stats.health.status == "degraded"
    assert any("rejected" in r for r in stats.health.reasons)


def test_a_valid_replacement_with_other_content_is_recorded(store: JobStore) -> None:
    register_resolving(store, facts())
    result, resolved = register_resolving(store, facts(size=2000, mtime_ns=7, checksum="ff"))
    assert result.outcome == "changed" and resolved == ()
    (row,) = rows(store)
    assert row.state == "rejected" and row.retryable is False and "other content" in row.reason
    with store.engine.connect() as conn:
        known = known_paths(conn, "incoming", [facts().rel_path])[facts().rel_path]
    assert known.holds(2000, 7) and known.holds(1003, 2)  # both versions are on record


def test_identical_bytes_delivered_again_refresh_the_mtime(store: JobStore) -> None:
    register_resolving(store, facts())
    result, _ = register_resolving(store, facts(mtime_ns=50))
    assert result.outcome == "unchanged"
    with store.engine.connect() as conn:
        known = known_paths(conn, "incoming", [facts().rel_path])[facts().rel_path]
    assert known.holds(1003, 50) and rows(store) == []
