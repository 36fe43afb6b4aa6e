"""Property-based model of the registry (reliability §5.3), on SQLite and PostgreSQL.

A hypothesis ``RuleBasedStateMachine`` drives the real store with an injected clock
through files arriving (with duplicates and conflicts), claims by two workers,
completions and failures (with current and stale tokens), crashes, heartbeats,
clock advances, the reaper, the incomplete-group timeout, operator cancel and retry.
After every step it checks the invariants:

1. a terminal job never changes again and is never claimed again;
2. at most one ``succeeded`` job per dedupe key;
4. a stale lease token never changes a row (checked on every write with an old token);
5. jobs exist only for groups that left ``collecting``; group counts are consistent;
6. ``attempt <= max_attempts``; ``dead`` only when attempts are exhausted or the error
   was permanent; a queued job always has an attempt left.

At the end of each example the machine drains the queue (reap, claim, complete) and
checks that nothing is left running or queued and that every group whose chain did
not end in ``dead``/``cancelled`` is ``done`` (no loss).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, func, select, text

from dsa_stream.config import GroupingConfig, WorkerConfig
from dsa_stream.exceptions import LeaseLostError, RegistryError
from dsa_stream.registry import (
    Claim,
    FileFacts,
    GroupState,
    GroupUpdate,
    JobKind,
    JobSpec,
    JobStore,
    WorkerIdentity,
    WorkerNotActiveError,
    expire_incomplete_groups,
    register_file,
)
from dsa_stream.registry.models import JOB_STATES, groups, input_files, jobs
from dsa_stream.registry.states import TERMINAL_JOB_STATES

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMES = [T0 + timedelta(minutes=5 * i) for i in range(4)]
GROUPING = GroupingConfig(
    n_subbands=4, min_subbands=2, complete_timeout_s=600, dec_tolerance_deg=None
)
CONFIG = WorkerConfig(max_attempts=3, backoff_base_s=10, backoff_max_s=60)
TABLES = (
    "job_events",
    "product_lineage",
    "calibrations",
    "products",
    "jobs",
    "input_files",
    "groups",
    "mosaic_windows",
    "workers",
)
EXAMPLES = {"sqlite": 50, "postgresql": 20}
STEPS = 50


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _facts(g: int, sb: int, variant: str = "") -> FileFacts:
    key = TIMES[g].strftime("%Y-%m-%dT%H:%M:%S")
    return FileFacts(
        root_id="incoming",
        rel_path=f"{variant}{key}_sb{sb:02d}.hdf5",
        size=100 + sb + (7 if variant else 0),
        mtime_ns=1,
        checksum=f"{variant}{sb}",
        obs_time=TIMES[g],
        subband=sb,
        group_key=key,
    )


class PipelineMachine(RuleBasedStateMachine):
    """The model of the module docstring; ``engine`` is set per database by the test."""

    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        with self.engine.begin() as conn:
            for table in TABLES:
                conn.execute(text(f"DELETE FROM {table}"))
        self.clock = Clock()
        self.store = JobStore(self.engine, CONFIG, clock=self.clock, rng=random.Random(0))
        self.workers = [self._new_worker(i) for i in range(2)]
        self.claims: list[Claim] = []
        self.zombies: list[Claim] = []
        self.terminal: dict[int, tuple[Any, ...]] = {}
        self.seen: set[tuple[int, int]] = set()
        self.variants = 0

    # -- helpers ---------------------------------------------------------------

    def _new_worker(self, slot: int) -> str:
        ident = WorkerIdentity(
            id=str(uuid.uuid4()),
            host=f"hypothesis-{slot}",
            pid=1,
            boot_id="b",
            proc_start="1",
            code_version="t",
            config_hash="c",
        )
        return self.store.start_worker(ident).worker_id

    def _row(self, job_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(jobs).where(jobs.c.id == job_id)).one()._mapping)

    def _live_worker(self, slot: int) -> str:
        try:
            self.store.heartbeat_worker(self.workers[slot])
        except WorkerNotActiveError:
            self.workers[slot] = self._new_worker(slot)
        return self.workers[slot]

    def _complete(self, claim: Claim) -> None:
        key = claim.dedupe_key.split(":", 1)[1]
        gid = claim.group_id
        assert gid is not None
        if claim.kind == JobKind.CONVERT:
            nxt = JobSpec(
                kind=JobKind.IMAGE,
                dedupe_key=f"image:{key}",
                order_key=claim.order_key,
                group_id=gid,
            )
            update = GroupUpdate(group_id=gid, state=GroupState.PROCESSING, stage="convert")
            self.store.complete(claim, next_jobs=[nxt], group_update=update)
        else:
            update = GroupUpdate(group_id=gid, state=GroupState.DONE, stage="image")
            self.store.complete(claim, group_update=update)

    def _finish(self, claim: Claim, outcome: str) -> None:
        before = self._row(claim.job_id)
        current = before["state"] == "running" and before["lease_token"] == claim.lease_token
        try:
            if outcome == "ok":
                self._complete(claim)
            else:
                self.store.fail(claim, f"{outcome} error", permanent=outcome == "permanent")
        except LeaseLostError:
            assert not current, "a current lease was refused"
            assert self._row(claim.job_id) == before, "a stale token changed the row"
            return
        assert current, "a stale token was accepted"

    @initialize(complete=st.integers(1, 3))
    def seed_groups(self, complete: int) -> None:
        """Start with 1-3 complete groups so that jobs exist from the first step."""
        for g in range(complete):
            for sb in range(GROUPING.n_subbands):
                register_file(self.store, _facts(g, sb), GROUPING)

    def _heartbeat(self, claim: Claim) -> bool:
        before = self._row(claim.job_id)
        current = before["state"] == "running" and before["lease_token"] == claim.lease_token
        try:
            self.store.heartbeat(claim)
        except LeaseLostError:
            assert not current, "a current lease was refused"
            assert self._row(claim.job_id) == before, "a stale heartbeat changed the row"
            return False
        assert current, "a stale heartbeat was accepted"
        return True

    # -- rules -----------------------------------------------------------------

    @rule(
        g=st.integers(0, len(TIMES) - 1),
        subbands=st.sets(st.integers(0, GROUPING.n_subbands), min_size=1, max_size=4),
        conflict=st.booleans(),
    )
    def files_arrive(self, g: int, subbands: set[int], conflict: bool) -> None:
        for sb in sorted(subbands):
            register_file(self.store, _facts(g, sb), GROUPING)
            if conflict:
                self.variants += 1
                register_file(self.store, _facts(g, sb, f"v{self.variants}/"), GROUPING)

    @rule(slot=st.integers(0, 1))
    def claim(self, slot: int) -> None:
        claim = self.store.claim(self._live_worker(slot))
        if claim is None:
            return
        assert claim.job_id not in self.terminal, "a terminal job was claimed"
        assert (claim.job_id, claim.lease_token) not in self.seen, "token reused"
        assert 1 <= claim.attempt <= claim.max_attempts
        self.seen.add((claim.job_id, claim.lease_token))
        self.claims.append(claim)

    @precondition(lambda self: self.claims)
    @rule(
        i=st.integers(0, 50),
        outcome=st.sampled_from(["ok", "ok", "transient", "permanent", "crash", "crash"]),
    )
    def finish(self, i: int, outcome: str) -> None:
        """The worker completes, fails, or crashes (kill -9 / SIGSTOP: a later zombie)."""
        claim = self.claims.pop(i % len(self.claims))
        if outcome == "crash":
            self.zombies.append(claim)
        else:
            self._finish(claim, outcome)

    @precondition(lambda self: self.zombies)
    @rule(i=st.integers(0, 50), outcome=st.sampled_from(["ok", "transient", "heartbeat"]))
    def zombie_writes(self, i: int, outcome: str) -> None:
        """A crashed worker's late write (legitimate if its lease is still current)."""
        claim = self.zombies.pop(i % len(self.zombies))
        if outcome == "heartbeat":
            if self._heartbeat(claim):
                self.claims.append(claim)
        else:
            self._finish(claim, outcome)

    @precondition(lambda self: self.claims)
    @rule(i=st.integers(0, 50))
    def heartbeat(self, i: int) -> None:
        claim = self.claims[i % len(self.claims)]
        if not self._heartbeat(claim):
            self.claims.remove(claim)

    @rule(dt=st.floats(0, 120), lapse=st.booleans(), reap=st.booleans())
    def time_passes(self, dt: float, lapse: bool, reap: bool) -> None:
        """The clock advances (optionally past every lease and backoff); the reaper may run."""
        extra = CONFIG.lease_s + CONFIG.backoff_max_s * 1.3 if lapse else 0.0
        self.clock.now += timedelta(seconds=dt + extra)
        if reap:
            self.store.reap()

    @rule(action=st.sampled_from(["cancel", "retry", "expire"]), pick=st.integers(0, 30))
    def operator(self, action: str, pick: int) -> None:
        """Operator cancel/retry of a random job, or the incomplete-group timer."""
        if action == "expire":
            expire_incomplete_groups(self.store, GROUPING)
            return
        states = ["dead", "cancelled"] if action == "retry" else list(JOB_STATES)
        with self.engine.connect() as conn:
            ids = conn.execute(select(jobs.c.id).where(jobs.c.state.in_(states))).scalars().all()
        if not ids:
            return
        job_id = sorted(ids)[pick % len(ids)]
        if action == "cancel":
            before = self._row(job_id)
            res = self.store.cancel(job_id)
            if res.outcome == "already_terminal":
                assert self._row(job_id) == before
            return
        try:
            new = self.store.retry(job_id)
        except RegistryError as exc:
            assert "already holds" in str(exc)
            return
        assert self._row(new.new_job_id)["requeue_of"] == job_id

    # -- invariants ------------------------------------------------------------

    @invariant()
    def job_invariants(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs)).all()
            dup = conn.execute(
                select(jobs.c.dedupe_key)
                .where(jobs.c.state == "succeeded")
                .group_by(jobs.c.dedupe_key)
                .having(func.count() > 1)
            ).all()
            early = conn.execute(
                select(jobs.c.id)
                .join(groups, groups.c.id == jobs.c.group_id)
                .where(groups.c.state == "collecting")
            ).all()
        assert dup == [], "two succeeded jobs for one dedupe key"
        assert early == [], "a job exists for a group still collecting"
        for r in rows:
            snap = (r.state, r.lease_token, r.attempt, r.finished_at, r.updated_at)
            if r.id in self.terminal:
                assert snap == self.terminal[r.id], f"terminal job {r.id} changed"
            elif r.state in TERMINAL_JOB_STATES:
                self.terminal[r.id] = snap
            assert r.attempt <= r.max_attempts
            if r.state == "dead":
                assert r.attempt >= r.max_attempts or r.error_class == "permanent"
            if r.state == "queued":
                assert r.attempt < r.max_attempts
            if r.state == "running":
                assert r.lease_owner is not None and r.lease_expires_at is not None

    @invariant()
    def group_invariants(self) -> None:
        with self.engine.connect() as conn:
            counted = dict(
                conn.execute(
                    select(input_files.c.group_id, func.count(input_files.c.subband.distinct()))
                    .where(input_files.c.state.in_(["registered", "consumed"]))
                    .group_by(input_files.c.group_id)
                ).all()
            )
            for g in conn.execute(select(groups)).all():
                assert g.n_present == counted.get(g.id, 0)
                if g.state == "complete":
                    assert g.n_present >= g.n_expected

    def teardown(self) -> None:
        """Drain: every job ends terminal; no complete group is lost."""
        for _ in range(200):
            self.clock.now += timedelta(seconds=CONFIG.lease_s + CONFIG.backoff_max_s * 1.3)
            self.store.reap()
            claim = self.store.claim(self._live_worker(0))
            while claim is not None:
                self._complete(claim)
                claim = self.store.claim(self._live_worker(0))
            with self.engine.connect() as conn:
                left = conn.execute(
                    select(func.count()).where(jobs.c.state.in_(["queued", "running"]))
                ).scalar_one()
            if not left:
                break
        assert left == 0, "jobs left after the drain"
        self.job_invariants()
        with self.engine.connect() as conn:
            unfinished = conn.execute(
                select(groups.c.group_key, groups.c.state).where(
                    groups.c.state.in_(["complete", "incomplete", "processing"]),
                    ~select(jobs.c.id)
                    .where(
                        jobs.c.group_id == groups.c.id,
                        jobs.c.state.in_(["dead", "cancelled"]),
                    )
                    .exists(),
                )
            ).all()
        assert unfinished == [], f"groups lost in the pipeline: {unfinished}"


@pytest.mark.slow
def test_registry_state_machine(engine: Engine) -> None:
    machine = type("Machine", (PipelineMachine,), {"engine": engine})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES[engine.dialect.name],
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
