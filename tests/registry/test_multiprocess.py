"""Real worker processes on SQLite and PostgreSQL: T2 exactly-once tally, T3 kill -9 chaos,
T4 SIGSTOP zombie fencing, T5 stale worker from an earlier run.

Workers are ``worker_proc.py`` subprocesses; each creates its own engine after it
started. Completions write a row into ``test_outputs`` in the completion
transaction, so duplicated or lost completions are visible in the database.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from dsa_stream.config import RegistryConfig, WorkerConfig
from dsa_stream.registry import JobKind, JobSpec, JobStore, WorkerIdentity, make_engine
from dsa_stream.registry.models import job_events, jobs
from dsa_stream.registry.queries import list_workers

WORKER = Path(__file__).with_name("worker_proc.py")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
OUTPUTS_DDL = (
    "CREATE TABLE test_outputs (job_id INTEGER NOT NULL, lease_token INTEGER NOT NULL, "
    "worker TEXT NOT NULL)",
    "CREATE TABLE test_rejections (job_id INTEGER NOT NULL, lease_token INTEGER NOT NULL, "
    "worker TEXT NOT NULL, what TEXT NOT NULL)",
)
FAST = {
    "lease_s": 1.0,
    "heartbeat_interval_s": 0.2,
    "self_fence_s": 0.8,
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
    "max_attempts": 25,
}


def prepare(engine: Engine, n_jobs: int, seed: int = 0) -> None:
    """Output tables plus ``n_jobs`` queued convert jobs with shuffled observation times."""
    with engine.begin() as conn:
        for ddl in OUTPUTS_DDL:
            conn.exec_driver_sql(ddl)
    store = JobStore(engine)
    times = [T0 + timedelta(minutes=5 * i) for i in range(n_jobs)]
    random.Random(seed).shuffle(times)
    for start in range(0, n_jobs, 250):
        with store.transaction() as txn:
            for t in times[start : start + 250]:
                txn.enqueue(JobSpec(kind=JobKind.CONVERT, dedupe_key=f"c:{t}", order_key=t))


class Workers:
    """The worker subprocesses of one test (logs under ``tmp_path``)."""

    def __init__(self, url: str, tmp: Path, config: dict[str, Any], **opts: Any) -> None:
        self.url, self.tmp, self.config, self.opts = url, tmp, config, opts
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.tmp / f"worker-{self.started}.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, str(WORKER), self.url, "--config", json.dumps(self.config)]
        for key, value in self.opts.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return proc

    def start(self, n: int) -> None:
        self.procs = [self.spawn() for _ in range(n)]

    def wait(self, timeout_s: float) -> list[int | None]:
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            with suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        return [p.poll() for p in self.procs]

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
            for f in sorted(self.tmp.glob("worker-*.log"))
        )


@contextmanager
def workers(url: str, tmp: Path, config: dict[str, Any], **opts: Any) -> Iterator[Workers]:
    group = Workers(url, tmp, config, **opts)
    try:
        yield group
    finally:
        group.kill_all()


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def remaining(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(jobs.c.state.in_(["queued", "running"]))
            ).scalar_one()
        )


@pytest.mark.slow
def test_t2_four_processes_claim_1000_jobs_exactly_once(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    prepare(engine, 1000)
    with workers(db_url, tmp_path, {}, reap_every=1.0) as group:
        group.start(4)
        codes = group.wait(timeout_s=240)
        assert codes == [0, 0, 0, 0], group.logs()
    assert scalar(engine, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") == 1000
    assert scalar(engine, "SELECT count(*) FROM test_outputs") == 1000
    assert scalar(engine, "SELECT count(DISTINCT job_id) FROM test_outputs") == 1000
    assert scalar(engine, "SELECT count(*) FROM test_rejections") == 0
    with engine.connect() as conn:
        claims = conn.execute(
            select(job_events.c.job_id, func.count())
            .where(job_events.c.event == "claimed")
            .group_by(job_events.c.job_id)
        ).all()
        workers_used = conn.execute(select(func.count(jobs.c.lease_owner.distinct()))).scalar()
    assert len(claims) == 1000 and all(n == 1 for _, n in claims)  # 0 double claims
    assert scalar(engine, "SELECT max(attempt) FROM jobs") == 1
    assert workers_used == 4


def _chaos_loop(
    engine: Engine, group: Workers, rng: random.Random, *, max_kills: int, max_stops: int
) -> dict[str, int]:
    """SIGKILL (and restart) or SIGSTOP-for-2.5-leases a random worker every 0.3-0.7 s."""
    kills = stops = 0
    while remaining(engine) and kills < max_kills:
        time.sleep(rng.uniform(0.3, 0.7))
        i = rng.randrange(len(group.procs))
        proc = group.procs[i]
        if proc.poll() is not None:  # drained or declared dead: replace while work is left
            group.procs[i] = group.spawn()
            continue
        if rng.random() < 0.2 and stops < max_stops:
            proc.send_signal(signal.SIGSTOP)  # a zombie: frozen past its lease
            time.sleep(2.5 * FAST["lease_s"])
            proc.send_signal(signal.SIGCONT)
            stops += 1
        else:
            proc.kill()
            proc.wait(timeout=30)
            kills += 1
            group.procs[i] = group.spawn()
    return {"kills": kills, "stops": stops}


@pytest.mark.slow
def test_t3_kill_chaos_loses_and_duplicates_nothing(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    n = 500
    prepare(engine, n, seed=1)
    rng = random.Random(42)
    with workers(db_url, tmp_path, FAST, work_max=0.05, reap_every=0.25) as group:
        group.start(4)
        faults = _chaos_loop(engine, group, rng, max_kills=12, max_stops=2)
        deadline = time.monotonic() + 120
        while remaining(engine) and time.monotonic() < deadline:
            if all(p.poll() is not None for p in group.procs):  # keep some workers running
                group.procs = [group.spawn() for _ in range(2)]
            time.sleep(0.2)
        group.wait(timeout_s=60)
    assert faults["kills"] >= 3, faults
    assert remaining(engine) == 0
    assert scalar(engine, "SELECT count(*) FROM jobs WHERE state <> 'succeeded'") == 0
    assert scalar(engine, "SELECT count(*) FROM test_outputs") == n  # 0 duplicated
    assert scalar(engine, "SELECT count(DISTINCT job_id) FROM test_outputs") == n  # 0 lost
    # every committed completion was made under the job's final lease
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM test_outputs o JOIN jobs j ON j.id = o.job_id "
            "WHERE o.lease_token <> j.lease_token",
        )
        == 0
    )
    # every refused (zombie or late) completion carried an outdated token
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM test_rejections r JOIN jobs j ON j.id = r.job_id "
            "WHERE r.lease_token >= j.lease_token",
        )
        == 0
    )
    claims = scalar(engine, "SELECT count(*) FROM job_events WHERE event = 'claimed'")
    print(
        f"\nchaos {engine.dialect.name}: {faults}, claims={claims} for {n} jobs, "
        f"rejected={scalar(engine, 'SELECT count(*) FROM test_rejections')}, "
        f"workers started={group.started}"
    )


def _wait_running(engine: Engine, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.state == "running")).first()
        if row is not None:
            return dict(row._mapping)
        time.sleep(0.05)
    raise AssertionError("no job became running")


def _stop_outside_transaction(proc: subprocess.Popen[bytes], url: str, job_id: int) -> None:
    """SIGSTOP ``proc`` at a moment it holds no lock on the job (nor SQLite's write lock),
    so the test itself is never blocked by the frozen process."""
    probe = make_engine(url, RegistryConfig(busy_timeout_s=0.05, lock_timeout_s=0.05))
    try:
        for _ in range(50):
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.05)
            try:
                with probe.begin() as conn:
                    conn.execute(
                        select(jobs.c.id).where(jobs.c.id == job_id).with_for_update(nowait=True)
                    )
                return
            except DBAPIError:
                proc.send_signal(signal.SIGCONT)
                time.sleep(0.01)
        raise AssertionError("could not stop the worker outside a transaction")
    finally:
        probe.dispose()


@pytest.mark.slow
def test_t4_sigstopped_zombie_is_fenced(engine: Engine, db_url: str, tmp_path: Path) -> None:
    prepare(engine, 1)
    # Lease fencing only: the zombie must not also be declared a dead *worker* when the
    # loaded machine stretches the pause past 3 leases (that path is T5's).
    zombie_cfg = {**FAST, "stale_worker_leases": 1000.0}
    cfg = WorkerConfig(**zombie_cfg)  # type: ignore[arg-type]
    with workers(db_url, tmp_path, zombie_cfg, work_min=3.0, work_max=3.0, reap_every=100) as group:
        group.start(1)
        zombie = group.procs[0]
        first = _wait_running(engine)
        _stop_outside_transaction(zombie, db_url, first["id"])
        time.sleep(2.5 * cfg.lease_s)
        store = JobStore(engine, cfg)
        reaped = store.reap()
        assert reaped.requeued == (first["id"],)
        time.sleep(cfg.backoff_max_s * 1.3)
        me = store.start_worker(WorkerIdentity.current("test")).worker_id
        claim = store.claim(me)
        assert claim is not None and claim.lease_token == first["lease_token"] + 1
        store.complete(
            claim,
            in_transaction=lambda txn: txn.conn.execute(
                text("INSERT INTO test_outputs VALUES (:j, :t, 'rescuer')"),
                {"j": claim.job_id, "t": claim.lease_token},
            ),
        )
        zombie.send_signal(signal.SIGCONT)
        assert group.wait(timeout_s=60) == [0], group.logs()
    with engine.connect() as conn:
        outputs = conn.execute(text("SELECT job_id, lease_token, worker FROM test_outputs")).all()
        rejected = conn.execute(text("SELECT lease_token, what FROM test_rejections")).all()
        final = conn.execute(select(jobs.c.state, jobs.c.lease_token)).one()
    assert outputs == [(first["id"], 2, "rescuer")]  # committed once, by the new lease
    assert rejected == [(1, "complete")]  # the zombie's late completion was refused
    assert tuple(final) == ("succeeded", 2)


@pytest.mark.slow
def test_t5_stale_worker_from_an_earlier_run_is_detected(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    prepare(engine, 1)
    with workers(db_url, tmp_path, {}, work_max=600.0, reap_every=100) as group:
        group.start(1)
        old = group.procs[0]
        running = _wait_running(engine)
        old.kill()  # kill -9: the workers row stays "active", the job stays "running"
        old.wait(timeout=30)
    # lease 60 s: only the pid check can tell; no backoff, to re-claim at once
    store = JobStore(engine, WorkerConfig(backoff_base_s=0, backoff_max_s=0))
    start = store.start_worker(WorkerIdentity.current("test"))
    assert start.stale_workers == (running["lease_owner"],)
    assert start.requeued_jobs == (running["id"],)
    with engine.connect() as conn:
        rows = {w.id: w for w in list_workers(conn, now=datetime.now(UTC))}
        detail = conn.execute(
            select(job_events.c.detail).where(job_events.c.event == "reaped")
        ).scalar_one()
    assert rows[running["lease_owner"]].state == "dead"
    assert f"pid {rows[running['lease_owner']].pid} is gone" in (
        rows[running["lease_owner"]].reason or ""
    )
    assert rows[start.worker_id].state == "active" and rows[start.worker_id].pid == os.getpid()
    assert "worker_dead" in (detail or "")
    claim = store.claim(start.worker_id)
    assert claim is not None and claim.attempt == 2
    store.complete(claim)
