"""Job store semantics on SQLite and PostgreSQL: enqueue, claim order, fencing, failure,
backoff, cancel, retry, reaper, transactional completion."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text

from dsa_stream.config import WorkerConfig
from dsa_stream.exceptions import LeaseLostError, RegistryError
from dsa_stream.registry import (
    Claim,
    ErrorClass,
    GroupState,
    GroupUpdate,
    JobKind,
    JobSpec,
    JobState,
    JobStore,
    ProductConflictError,
    ProductSpec,
    StopMode,
    WorkerNotActiveError,
    make_engine,
)
from dsa_stream.registry.models import groups, job_events, jobs, product_lineage, products
from dsa_stream.registry.queries import dead_letter, get_job, job_history, list_workers
from dsa_stream.registry.states import backoff_delay_s

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def spec(key: str, kind: JobKind = JobKind.CONVERT, t: datetime = T0, **kw: object) -> JobSpec:
    return JobSpec(kind=kind, dedupe_key=key, order_key=t, **kw)  # type: ignore[arg-type]


def job_row(engine: Engine, job_id: int) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(select(jobs).where(jobs.c.id == job_id)).one()._mapping)


def claim_one(store: JobStore, worker: str) -> Claim:
    claim = store.claim(worker)
    assert claim is not None
    return claim


# -- enqueue ------------------------------------------------------------------


def test_enqueue_is_idempotent_per_dedupe_key(
    store: JobStore, make_worker: Callable[[], str]
) -> None:
    first = store.enqueue(spec("convert:a"))
    again = store.enqueue(spec("convert:a", t=T0 + timedelta(days=1)))
    assert first.created and not again.created and again.job_id == first.job_id
    w = make_worker()
    store.complete(claim_one(store, w))
    done = store.enqueue(spec("convert:a"))
    assert not done.created and done.state == JobState.SUCCEEDED  # succeeded holds the key too
    other = store.enqueue(spec("convert:b", max_attempts=2, timeout_s=7, payload={"x": 1}))
    row = job_row(store.engine, other.job_id)
    assert (row["max_attempts"], row["timeout_s"], row["payload"]) == (2, 7, {"x": 1})
    assert row["priority"] == 30 and row["attempt"] == 0 and row["lease_token"] == 0


def test_dead_key_can_be_enqueued_again(store: JobStore, make_worker: Callable[[], str]) -> None:
    first = store.enqueue(spec("k"))
    store.fail(claim_one(store, make_worker()), "corrupt input", permanent=True)
    again = store.enqueue(spec("k"))
    assert again.created and again.job_id != first.job_id


# -- claim --------------------------------------------------------------------


def test_claim_order_priority_then_obs_time_then_id(
    store: JobStore, make_worker: Callable[[], str]
) -> None:
    rng = random.Random(7)
    times = [T0 + timedelta(minutes=5 * i) for i in range(12)]
    shuffled = times[:]
    rng.shuffle(shuffled)
    for t in shuffled:  # registered in shuffled arrival order
        store.enqueue(spec(f"convert:{t.isoformat()}", t=t))
    store.enqueue(spec("image:late", JobKind.IMAGE, t=times[-1]))
    store.enqueue(spec("publish:x", JobKind.PUBLISH, t=times[-1]))
    same_a = store.enqueue(spec("calibrate:a", JobKind.CALIBRATE, t=times[3]))
    same_b = store.enqueue(spec("calibrate:b", JobKind.CALIBRATE, t=times[3]))
    w = make_worker()
    order = []
    while (c := store.claim(w)) is not None:
        order.append((c.kind, c.order_key, c.job_id))
        store.complete(c)
    kinds = [k for k, _, _ in order]
    assert kinds[:4] == ["publish", "image", "calibrate", "calibrate"]
    assert [j for _, _, j in order[2:4]] == [same_a.job_id, same_b.job_id]  # tie -> id
    assert [t for _, t, _ in order[4:]] == times  # observation-time order within a kind


def test_claim_filters_by_kind_and_respects_available_at(
    store: JobStore, clock: Callable[[], datetime], make_worker: Callable[[], str]
) -> None:
    store.enqueue(spec("c", JobKind.CONVERT))
    store.enqueue(spec("i", JobKind.IMAGE, delay_s=30))
    w = make_worker()
    assert store.claim(w, kinds=["image"]) is None  # not yet available
    clock.advance(31)  # type: ignore[attr-defined]
    got = store.claim(w, kinds=["image", "mosaic"])
    assert got is not None and got.kind == "image"
    assert claim_one(store, w).kind == "convert"


def test_claim_sets_lease_and_audit(store: JobStore, make_worker: Callable[[], str]) -> None:
    job = store.enqueue(spec("k"))
    w = make_worker()
    c = claim_one(store, w)
    assert (c.job_id, c.lease_token, c.attempt) == (job.job_id, 1, 1)
    assert c.lease_expires_at == T0 + timedelta(seconds=store.config.lease_s)
    row = job_row(store.engine, c.job_id)
    assert row["state"] == "running" and row["lease_owner"] == w
    with store.engine.connect() as conn:
        events = [(e.event, e.from_state, e.to_state) for e in job_history(conn, c.job_id)]
        workers = {r.id: r for r in list_workers(conn, now=T0)}
    assert events == [("enqueued", None, "queued"), ("claimed", "queued", "running")]
    assert workers[w].current_job_id == c.job_id


def test_claim_requires_an_active_worker(store: JobStore, make_worker: Callable[[], str]) -> None:
    store.enqueue(spec("k"))
    with pytest.raises(WorkerNotActiveError):
        store.claim("no-such-worker")
    w = make_worker()
    assert store.request_stop(w, StopMode.DRAIN)
    with pytest.raises(WorkerNotActiveError, match="draining"):
        store.claim(w)
    w2 = make_worker()
    assert store.stop_worker(w2)
    with pytest.raises(WorkerNotActiveError):
        store.claim(w2)
    assert job_row(store.engine, 1)["state"] == "queued"


def test_t1_claim_race_exactly_one_winner(store: JobStore, make_worker: Callable[[], str]) -> None:
    """T1: one queued job, 8 connections claim at the same instant."""
    store.enqueue(spec("only"))
    workers = [make_worker() for _ in range(8)]
    barrier = threading.Barrier(len(workers))
    results: list[Claim | None] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(w: str) -> None:
        try:
            barrier.wait(timeout=10)
            got = store.claim(w)
            with lock:
                results.append(got)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    winners = [r for r in results if r is not None]
    assert len(results) == 8 and len(winners) == 1
    assert winners[0].attempt == 1 and winners[0].lease_token == 1
    with store.engine.connect() as conn:
        n_claims = conn.execute(
            select(job_events.c.id).where(job_events.c.event == "claimed")
        ).all()
    assert len(n_claims) == 1


def test_real_clock_claim_and_reap(engine: Engine, make_worker: Callable[[], str]) -> None:
    """Without an injected clock: host time on SQLite, clock_timestamp() on PostgreSQL."""
    cfg = WorkerConfig(lease_s=0.6, heartbeat_interval_s=0.1, self_fence_s=0.5)
    real = JobStore(engine, cfg)
    w = make_worker()
    real.heartbeat_worker(w)
    real.enqueue(spec("k"))
    before = datetime.now(UTC)
    c = claim_one(real, w)
    assert abs((c.claimed_at - before).total_seconds()) < 5
    assert abs((c.lease_expires_at - c.claimed_at).total_seconds() - 0.6) < 0.05
    assert real.reap().requeued == ()
    threading.Event().wait(0.8)
    reaped = real.reap()
    assert reaped.requeued == (c.job_id,)
    with pytest.raises(LeaseLostError):
        real.complete(c)


# -- fencing --------------------------------------------------------------------


def test_stale_token_changes_nothing(
    store: JobStore, clock: object, make_worker: Callable[[], str]
) -> None:
    store.enqueue(spec("k"))
    w1, w2 = make_worker(), make_worker()
    old = claim_one(store, w1)
    clock.advance(store.config.lease_s + 1)  # type: ignore[attr-defined]
    assert store.reap().requeued == (old.job_id,)
    assert store.claim(w2) is None  # backoff after the lapsed attempt (30 s +- 20%)
    clock.advance(37)  # type: ignore[attr-defined]
    new = claim_one(store, w2)
    assert new.lease_token == old.lease_token + 1 and new.attempt == 2
    snapshot = job_row(store.engine, old.job_id)
    for call in (
        lambda: store.heartbeat(old, progress=0.9),
        lambda: store.complete(old, next_jobs=[spec("next", JobKind.IMAGE)]),
        lambda: store.fail(old, "late failure"),
        lambda: store.fail(old, "late failure", permanent=True),
        lambda: store.mark_cancelled(old),
    ):
        with pytest.raises(LeaseLostError):
            call()
        assert job_row(store.engine, old.job_id) == snapshot
    with store.engine.connect() as conn:
        assert conn.execute(select(jobs.c.id).where(jobs.c.dedupe_key == "next")).first() is None
    store.complete(new)
    assert job_row(store.engine, old.job_id)["state"] == "succeeded"


def test_heartbeat_extends_lease_and_reports_progress(
    store: JobStore, clock: object, make_worker: Callable[[], str]
) -> None:
    store.enqueue(spec("k"))
    c = claim_one(store, make_worker())
    clock.advance(40)  # type: ignore[attr-defined]
    hb = store.heartbeat(c, progress=0.25)
    assert hb.lease_expires_at == T0 + timedelta(seconds=40 + store.config.lease_s)
    assert not hb.cancel_requested and hb.stop_requested is None
    clock.advance(40)  # type: ignore[attr-defined]  # past the first lease, within the new one
    assert store.reap().requeued == ()
    assert job_row(store.engine, c.job_id)["progress"] == 0.25
    store.complete(c)


# -- failures, backoff, dead -----------------------------------------------------


def test_backoff_formula() -> None:
    rng = random.Random(0)
    for attempt, base in [(1, 30), (2, 60), (3, 120), (5, 480), (6, 900), (60, 900), (1000, 900)]:
        for _ in range(50):
            d = backoff_delay_s(attempt, base_s=30, max_s=900, jitter=0.2, rng=rng)
            assert 0.8 * base <= d <= 1.2 * base


def test_transient_failure_requeues_with_backoff_then_dead(
    store: JobStore, clock: object, make_worker: Callable[[], str]
) -> None:
    job = store.enqueue(spec("convert:g", max_attempts=3))
    w = make_worker()
    for attempt in (1, 2):
        c = claim_one(store, w)
        assert c.attempt == attempt
        res = store.fail(c, f"flaky {attempt}")
        assert res.state == JobState.QUEUED and res.error_class == ErrorClass.TRANSIENT
        delay = (res.available_at - clock.now).total_seconds()  # type: ignore[attr-defined,operator]
        base = 30 * 2 ** (attempt - 1)
        assert 0.8 * base <= delay <= 1.2 * base
        assert store.claim(w) is None  # not before the backoff
        clock.advance(delay + 0.001)  # type: ignore[attr-defined]
    last = claim_one(store, w)
    res = store.fail(last, "flaky 3")
    assert res.state == JobState.DEAD and res.available_at is None
    row = job_row(store.engine, job.job_id)
    assert (row["state"], row["attempt"], row["last_error"]) == ("dead", 3, "flaky 3")
    with store.engine.connect() as conn:
        assert [j.id for j in dead_letter(conn)] == [job.job_id]


def test_permanent_failure_is_dead_at_once_and_fails_the_group(
    store: JobStore, make_worker: Callable[[], str], facts: Callable[..., object]
) -> None:
    from dsa_stream.registry import register_file

    for sb in range(16):
        res = register_file(store, facts(T0, sb))  # type: ignore[arg-type]
    assert res.convert_job_id is not None
    c = claim_one(store, make_worker())
    with store.engine.connect() as conn:
        assert conn.execute(select(groups.c.state)).scalar() == "processing"
    out = store.fail(c, "schema mismatch", permanent=True)
    assert out.state == JobState.DEAD and out.error_class == ErrorClass.PERMANENT
    with store.engine.connect() as conn:
        g = conn.execute(select(groups.c.state, groups.c.reason)).one()
    assert g.state == "failed" and "schema mismatch" in g.reason


# -- completion transaction ---------------------------------------------------------


def test_complete_commits_products_lineage_group_and_next_jobs(
    store: JobStore, make_worker: Callable[[], str], facts: Callable[..., object]
) -> None:
    from dsa_stream.registry import register_file

    for sb in range(16):
        reg = register_file(store, facts(T0, sb))  # type: ignore[arg-type]
    gid = reg.group_id
    w = make_worker()
    c = claim_one(store, w)
    ms = ProductSpec(
        kind="ms",
        logical_key=f"ms:{reg.group_key}",
        root_id="staging",
        rel_path=f"ms/{reg.group_key}.ms",
        manifest_hash="abc",
        obs_start=T0,
        obs_end=T0 + timedelta(minutes=5),
        group_id=gid,
    )
    seen: list[int] = []
    res = store.complete(
        c,
        products=[ms],
        next_jobs=[spec(f"calibrate:{reg.group_key}", JobKind.CALIBRATE, group_id=gid)],
        group_update=GroupUpdate(group_id=gid, state=GroupState.PROCESSING, stage="convert"),
        in_transaction=lambda txn: seen.append(txn.conn.execute(text("SELECT 1")).scalar_one()),
    )
    assert res.group_updated is True and len(res.product_ids) == 1 and seen == [1]
    assert res.next_jobs[0].created
    c2 = claim_one(store, w)
    image = ms.model_copy(
        update={
            "kind": "image",
            "logical_key": "img",
            "rel_path": "i.fits",
            "parents": res.product_ids,
        }
    )
    res2 = store.complete(
        c2,
        products=[image],
        group_update=GroupUpdate(group_id=gid, state=GroupState.DONE, stage="image"),
    )
    with store.engine.connect() as conn:
        edges = conn.execute(select(product_lineage.c.parent_id, product_lineage.c.child_id)).all()
        g = conn.execute(select(groups.c.state, groups.c.stage)).one()
    assert edges == [(res.product_ids[0], res2.product_ids[0])]
    assert (g.state, g.stage) == ("done", "image")


def test_failed_completion_rolls_everything_back(
    store: JobStore, make_worker: Callable[[], str]
) -> None:
    store.enqueue(spec("a"))
    store.enqueue(spec("b", t=T0 + timedelta(minutes=5)))
    w = make_worker()
    first = claim_one(store, w)
    p = ProductSpec(
        kind="ms",
        logical_key="same",
        root_id="s",
        rel_path="x",
        manifest_hash="h",
        obs_start=T0,
        obs_end=T0,
    )
    store.complete(first, products=[p])
    second = claim_one(store, w)

    def boom(_txn: object) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError):
        store.complete(second, next_jobs=[spec("n", JobKind.IMAGE)], in_transaction=boom)
    with pytest.raises(ProductConflictError, match="already exists"):
        store.complete(second, products=[p], next_jobs=[spec("n", JobKind.IMAGE)])
    row = job_row(store.engine, second.job_id)
    assert row["state"] == "running"
    with store.engine.connect() as conn:
        assert conn.execute(select(jobs.c.id).where(jobs.c.dedupe_key == "n")).first() is None
        assert len(conn.execute(select(products.c.id)).all()) == 1
    store.complete(second, products=[p.model_copy(update={"version": 2})])


# -- cancel and retry -----------------------------------------------------------------


def test_cancel_queued_and_running(
    store: JobStore, clock: object, make_worker: Callable[[], str]
) -> None:
    queued = store.enqueue(spec("q", t=T0 + timedelta(hours=1)))
    running = store.enqueue(spec("r"))
    w = make_worker()
    c = claim_one(store, w)
    assert c.job_id == running.job_id
    assert store.cancel(queued.job_id).outcome == "cancelled"
    assert store.cancel(queued.job_id).outcome == "already_terminal"
    assert store.cancel(running.job_id).outcome == "cancel_requested"
    assert job_row(store.engine, running.job_id)["state"] == "running"
    hb = store.heartbeat(c)
    assert hb.cancel_requested
    store.mark_cancelled(c)
    assert job_row(store.engine, running.job_id)["state"] == "cancelled"
    assert store.claim(w) is None
    with pytest.raises(RegistryError, match="no job"):
        store.cancel(999)
    # a cancel pending when the worker dies: the reaper cancels instead of requeueing
    third = store.enqueue(spec("t"))
    c3 = claim_one(store, w)
    store.cancel(third.job_id)
    clock.advance(store.config.lease_s + 1)  # type: ignore[attr-defined]
    assert store.reap().cancelled == (c3.job_id,)
    # and a failure reported after the cancel request ends cancelled too
    fourth = store.enqueue(spec("f"))
    store.heartbeat_worker(w)
    c4 = claim_one(store, w)
    store.cancel(fourth.job_id)
    assert store.fail(c4, "interrupted").state == JobState.CANCELLED


def test_retry_creates_a_linked_row_and_audit(
    store: JobStore, make_worker: Callable[[], str]
) -> None:
    job = store.enqueue(spec("k", payload={"a": 1}))
    w = make_worker()
    store.fail(claim_one(store, w), "bad", permanent=True)
    with store.engine.connect() as conn:
        assert len(dead_letter(conn)) == 1
    res = store.retry(job.job_id, actor="alice", reason="fixed the input")
    assert res.new_job_id != job.job_id
    new = job_row(store.engine, res.new_job_id)
    assert new["requeue_of"] == job.job_id and new["state"] == "queued" and new["attempt"] == 0
    assert new["payload"] == {"a": 1}
    assert job_row(store.engine, job.job_id)["state"] == "dead"  # the old row stays terminal
    with store.engine.connect() as conn:
        assert dead_letter(conn) == []
        old_events = [e.event for e in job_history(conn, job.job_id)]
        new_events = job_history(conn, res.new_job_id)
    assert old_events[-1] == "retried"
    assert new_events[0].detail == f"requeue of job {job.job_id}"
    with pytest.raises(RegistryError, match="already holds"):
        store.retry(job.job_id)  # the new row is queued and holds the dedupe key
    with pytest.raises(RegistryError, match="only dead or cancelled"):
        store.retry(res.new_job_id)
    store.complete(claim_one(store, w))
    with store.engine.connect() as conn:
        got = get_job(conn, res.new_job_id)
    assert got is not None and got.state == "succeeded"


# -- reaper and worker liveness -----------------------------------------------------------


def test_reaper_counts_the_attempt_and_kills_at_max(
    store: JobStore, clock: object, make_worker: Callable[[], str]
) -> None:
    job = store.enqueue(spec("poison", max_attempts=2))
    for attempt in (1, 2):
        w = make_worker()
        c = claim_one(store, w)
        assert c.attempt == attempt
        clock.advance(store.config.lease_s + 1)  # type: ignore[attr-defined]
        res = store.reap()
        expected = (job.job_id,)
        assert (res.requeued if attempt == 1 else res.dead) == expected
        if attempt == 1:
            clock.advance(store.config.backoff_max_s * 1.3)  # type: ignore[attr-defined]
    row = job_row(store.engine, job.job_id)
    assert (row["state"], row["attempt"], row["error_class"]) == ("dead", 2, "lease_expired")
    with store.engine.connect() as conn:
        events = [(e.event, e.to_state) for e in job_history(conn, job.job_id)]
    assert events.count(("reaped", "queued")) == 1 and events[-1] == ("reaped", "dead")


def test_reaper_works_in_bounded_batches(
    engine: Engine, clock: object, make_worker: Callable[[], str]
) -> None:
    store = JobStore(engine, WorkerConfig(reap_batch=3), clock=clock)  # type: ignore[arg-type]
    for i in range(7):
        store.enqueue(spec(f"k{i}"))
    workers = [make_worker() for _ in range(7)]
    for w in workers:
        claim_one(store, w)
    clock.advance(61)  # type: ignore[attr-defined]
    for w in workers:
        store.heartbeat_worker(w)  # workers alive, their leases lapsed
    sizes = []
    while True:
        res = store.reap()
        sizes.append(len(res.requeued))
        if not res.more:
            break
    assert sizes == [3, 3, 1]


def test_stale_worker_heartbeat_is_declared_dead_and_its_job_requeued(
    store: JobStore, clock: object, make_worker: Callable[[], str]
) -> None:
    store.enqueue(spec("k"))
    old = make_worker()
    c = claim_one(store, old)
    clock.advance(30)  # type: ignore[attr-defined]
    store.heartbeat(c)
    clock.advance(3 * store.config.lease_s + 1)  # type: ignore[attr-defined]
    new = make_worker()  # start-up reap
    with store.engine.connect() as conn:
        states = {r.id: r.state for r in list_workers(conn, now=clock.now)}  # type: ignore[attr-defined]
    assert states[old] == "dead" and states[new] == "active"
    with pytest.raises(WorkerNotActiveError):
        store.heartbeat_worker(old)
    with pytest.raises(LeaseLostError):
        store.heartbeat(c)
    assert job_row(store.engine, c.job_id)["state"] == "queued"


def test_stop_request_reaches_the_worker(store: JobStore, make_worker: Callable[[], str]) -> None:
    store.enqueue(spec("k"))
    w = make_worker()
    c = claim_one(store, w)
    assert store.request_stop(w, StopMode.KILL)
    assert store.heartbeat(c).stop_requested == StopMode.KILL
    assert store.heartbeat_worker(w) == StopMode.KILL
    store.complete(c)  # a draining worker may still finish its job
    assert store.stop_worker(w) and not store.request_stop(w, StopMode.DRAIN)


@pytest.mark.postgres
def test_only_one_reaper_at_a_time_on_postgres(pg_url: str) -> None:
    from dsa_stream.registry import upgrade
    from dsa_stream.registry.reaper import REAPER_LOCK_KEY

    engine = make_engine(pg_url)
    upgrade(engine)
    store = JobStore(engine, clock=lambda: T0)
    with engine.begin() as conn:  # another host's reaper holds the lock
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": REAPER_LOCK_KEY})
        assert store.reap().skipped
    assert not store.reap().skipped
    engine.dispose()
