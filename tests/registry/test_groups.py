"""Group assembly (database side): idempotent registration, duplicates, completion,
incomplete-group policy, missing/quarantined files."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from dsa_stream.config import GroupingConfig
from dsa_stream.registry import (
    FileFacts,
    GroupState,
    JobStore,
    RegisterOutcome,
    expire_incomplete_groups,
    mark_file_missing,
    mark_group_files_consumed,
    quarantine_file,
    register_file,
)
from dsa_stream.registry.models import groups, input_files, jobs
from dsa_stream.registry.queries import list_files, list_groups

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Facts = Callable[..., FileFacts]


def n_jobs(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())


def group_row(engine: Engine, key: str) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(select(groups).where(groups.c.group_key == key)).one()._mapping)


def test_sixteen_subbands_complete_the_group_and_enqueue_one_convert(
    store: JobStore, facts: Facts
) -> None:
    order = list(range(16))
    random.Random(2).shuffle(order)
    results = []
    for sb in order:
        # the header time of each subband jitters by a fraction of a second
        t = T0 + timedelta(milliseconds=random.Random(sb).uniform(0, 900))
        results.append(register_file(store, facts(T0, sb, obs_time=t)))
        assert n_jobs(store.engine) == (1 if len(results) == 16 else 0)
    assert all(r.outcome == RegisterOutcome.REGISTERED for r in results)
    assert [r.convert_job_id is not None for r in results] == [False] * 15 + [True]
    assert results[-1].group_state == GroupState.COMPLETE and results[-1].n_present == 16
    with store.engine.connect() as conn:
        job = conn.execute(select(jobs)).one()
    assert job.kind == "convert" and job.dedupe_key == "convert:2026-01-01T00:00:00"
    earliest = min(T0 + timedelta(milliseconds=random.Random(sb).uniform(0, 900)) for sb in order)
    assert job.order_key == earliest  # the earliest header time of the group
    assert job.payload == {"group_key": "2026-01-01T00:00:00", "missing_subbands": []}
    # registering everything again changes nothing
    for sb in range(16):
        again = register_file(store, facts(T0, sb))
        assert again.outcome == RegisterOutcome.UNCHANGED and again.convert_job_id is None
    assert n_jobs(store.engine) == 1


def test_conflicting_and_identical_duplicates_are_quarantined(
    store: JobStore, facts: Facts
) -> None:
    first = register_file(store, facts(T0, 3))
    dup = register_file(store, facts(T0, 3, rel_path="copy/sb03.hdf5"))
    conflict = register_file(
        store, facts(T0, 3, rel_path="other/sb03.hdf5", checksum="ffff", size=5)
    )
    assert first.outcome == RegisterOutcome.REGISTERED
    assert dup.outcome == RegisterOutcome.DUPLICATE and "identical copy" in (dup.reason or "")
    assert conflict.outcome == RegisterOutcome.CONFLICT
    assert f"file {first.file_id}" in (conflict.reason or "")
    with store.engine.connect() as conn:
        states = dict(conn.execute(select(input_files.c.id, input_files.c.state)).all())
        files = list_files(conn, state="quarantined")
    assert states == {
        first.file_id: "registered",
        dup.file_id: "quarantined",
        conflict.file_id: "quarantined",
    }
    assert {f.id for f in files} == {dup.file_id, conflict.file_id}
    assert conflict.n_present == 1  # the first file stays and counts once


def test_content_change_under_the_same_name_is_quarantined(store: JobStore, facts: Facts) -> None:
    first = register_file(store, facts(T0, 0))
    changed = register_file(store, facts(T0, 0, size=1, checksum="beef"))
    assert changed.outcome == RegisterOutcome.CHANGED and changed.file_id == first.file_id
    assert changed.n_present == 0 and "content changed" in (changed.reason or "")


def test_invalid_files_are_rejected(store: JobStore, facts: Facts) -> None:
    bad_sb = register_file(store, facts(T0, 16))
    register_file(store, facts(T0, 0))
    bad_dec = register_file(store, facts(T0, 1, dec_deg=10.0))
    assert bad_sb.outcome == bad_dec.outcome == RegisterOutcome.REJECTED
    assert "out of range" in (bad_sb.reason or "") and "Dec" in (bad_dec.reason or "")
    assert bad_dec.n_present == 1


def test_late_file_for_a_closed_group_is_kept_but_late(
    store: JobStore, clock: object, facts: Facts
) -> None:
    for sb in range(13):
        register_file(store, facts(T0, sb))
    clock.advance(601)  # type: ignore[attr-defined]
    expired = expire_incomplete_groups(store)
    assert [e.state for e in expired] == [GroupState.INCOMPLETE]
    late = register_file(store, facts(T0, 14))
    assert late.outcome == RegisterOutcome.LATE and late.group_state == GroupState.INCOMPLETE
    assert n_jobs(store.engine) == 1


def test_incomplete_timeout_policy_process(store: JobStore, clock: object, facts: Facts) -> None:
    for sb in range(12):
        register_file(store, facts(T0, sb))
    for sb in range(5):
        register_file(store, facts(T0 + timedelta(minutes=5), sb))
    clock.advance(300)  # type: ignore[attr-defined]
    assert expire_incomplete_groups(store) == []  # not yet timed out
    clock.advance(301)  # type: ignore[attr-defined]
    out = {e.group_key: e for e in expire_incomplete_groups(store)}
    a, b = out["2026-01-01T00:00:00"], out["2026-01-01T00:05:00"]
    assert a.state == GroupState.INCOMPLETE and a.missing_subbands == (12, 13, 14, 15)
    assert a.convert_job_id is not None
    assert b.state == GroupState.QUARANTINED and b.missing_subbands == tuple(range(5, 16))
    assert b.convert_job_id is None
    with store.engine.connect() as conn:
        job = conn.execute(select(jobs)).one()
        rows = {g.group_key: g for g in list_groups(conn)}
    assert job.payload["missing_subbands"] == [12, 13, 14, 15]
    assert rows[b.group_key].missing_subbands == list(range(5, 16))
    assert "timed out" in (rows[b.group_key].reason or "")
    assert expire_incomplete_groups(store) == []  # once only


def test_incomplete_timeout_policy_quarantine(store: JobStore, facts: Facts) -> None:
    for sb in range(15):
        register_file(store, facts(T0, sb))
    out = expire_incomplete_groups(
        store,
        now=store.now() + timedelta(hours=1),
        timeout_s=600,
        policy="quarantine",
        min_subbands=12,
    )
    assert [(e.state, e.missing_subbands) for e in out] == [(GroupState.QUARANTINED, (15,))]
    assert n_jobs(store.engine) == 0
    # a group quarantined never gets jobs, even when its last file arrives
    assert register_file(store, facts(T0, 15)).outcome == RegisterOutcome.LATE
    assert n_jobs(store.engine) == 0


def test_missing_and_quarantined_files_are_recounted(store: JobStore, facts: Facts) -> None:
    regs = [register_file(store, facts(T0, sb)) for sb in range(15)]
    assert mark_file_missing(store, "incoming", regs[0].group_key + "_sb00.hdf5")
    assert not mark_file_missing(store, "incoming", "nope.hdf5")
    assert quarantine_file(store, regs[1].file_id, "operator: bad header")
    assert not quarantine_file(store, 99_999, "x")
    assert group_row(store.engine, regs[0].group_key)["n_present"] == 13
    # the missing file reappears with the same content: counted again
    back = register_file(store, facts(T0, 0))
    assert back.outcome == RegisterOutcome.REGISTERED and back.n_present == 14
    # a fresh copy of the quarantined subband at another path fills the slot
    register_file(store, facts(T0, 1, rel_path="resent/sb01.hdf5"))
    done = register_file(store, facts(T0, 15))
    assert done.group_state == GroupState.COMPLETE and done.convert_job_id is not None


def test_files_consumed_in_the_convert_completion(
    store: JobStore, facts: Facts, make_worker: Callable[[], str]
) -> None:
    for sb in range(16):
        reg = register_file(store, facts(T0, sb))
    claim = store.claim(make_worker())
    assert claim is not None
    counted: list[int] = []
    store.complete(
        claim,
        in_transaction=lambda txn: counted.append(mark_group_files_consumed(txn, reg.group_id)),
    )
    assert counted == [16]
    assert register_file(store, facts(T0, 4)).outcome == RegisterOutcome.UNCHANGED


def test_grouping_config_is_respected(store: JobStore, facts: Facts) -> None:
    cfg = GroupingConfig(n_subbands=4, min_subbands=2, dec_tolerance_deg=None)
    for sb in range(4):
        res = register_file(store, facts(T0, sb, dec_deg=float(sb * 10)), cfg)
    assert res.group_state == GroupState.COMPLETE and res.convert_job_id is not None
    with pytest.raises(ValueError, match="min_subbands"):
        GroupingConfig(n_subbands=4, min_subbands=5)


def test_groups_in_shuffled_arrival_are_claimed_in_observation_order(
    store: JobStore, facts: Facts, make_worker: Callable[[], str]
) -> None:
    """T9 (registry part): arrival order never decides the processing order."""
    times = [T0 + timedelta(minutes=5 * i) for i in range(6)]
    arrivals = [(t, sb) for t in times for sb in range(16)]
    random.Random(11).shuffle(arrivals)
    for t, sb in arrivals:
        register_file(store, facts(t, sb))
    w = make_worker()
    claimed = []
    while (c := store.claim(w)) is not None:
        claimed.append(c.order_key)
        store.complete(c)
    assert claimed == times
