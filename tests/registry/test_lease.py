"""LeaseKeeper: the heartbeat thread of one claim (renewal, lease loss, cancel, self-fence)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from dsa_stream.config import WorkerConfig
from dsa_stream.registry import Claim, JobKind, JobSpec, JobStore, LeaseKeeper

FAST = WorkerConfig(lease_s=0.8, heartbeat_interval_s=0.1, self_fence_s=0.5)


def _claimed(engine: Engine, make_worker: Callable[[], str]) -> tuple[JobStore, Claim]:
    store = JobStore(engine, FAST)
    store.enqueue(JobSpec(kind=JobKind.IMAGE, dedupe_key="k", order_key=datetime.now(UTC)))
    claim = store.claim(make_worker())
    assert claim is not None
    return store, claim


def test_keeper_renews_the_lease_and_reports_progress(
    engine: Engine, make_worker: Callable[[], str]
) -> None:
    store, claim = _claimed(engine, make_worker)
    with LeaseKeeper(store, claim) as lease:
        for i in range(1, 6):
            lease.set_progress(i / 5)
            time.sleep(0.3)  # 1.5 s in all, about two leases
            assert store.reap().requeued == ()
        assert not lease.lost.is_set()
    store.complete(claim)


def test_keeper_signals_lease_loss(engine: Engine, make_worker: Callable[[], str]) -> None:
    store, claim = _claimed(engine, make_worker)
    reasons: list[str] = []
    later = JobStore(engine, FAST, clock=lambda: datetime.now(UTC) + timedelta(hours=1))
    with LeaseKeeper(store, claim, on_lost=reasons.append) as lease:
        assert later.reap().requeued == (claim.job_id,)  # as seen by a reaper an hour later
        assert lease.lost.wait(5)
    assert reasons and "no longer current" in reasons[0]


def test_keeper_signals_cancel(engine: Engine, make_worker: Callable[[], str]) -> None:
    store, claim = _claimed(engine, make_worker)
    cancelled = threading.Event()
    with LeaseKeeper(store, claim, on_cancel=cancelled.set) as lease:
        store.cancel(claim.job_id)
        assert lease.cancel_requested.wait(5) and cancelled.is_set()
    store.mark_cancelled(claim)


def test_keeper_self_fences_when_the_database_is_unreachable(
    engine: Engine, make_worker: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, claim = _claimed(engine, make_worker)

    def down(*_a: object, **_k: object) -> None:
        raise OperationalError("heartbeat", {}, Exception("server closed the connection"))

    monkeypatch.setattr(store, "heartbeat", down)
    with LeaseKeeper(store, claim) as lease:
        assert lease.lost.wait(5)
    assert "self-fence" in (lease.reason or "")
