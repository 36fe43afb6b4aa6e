"""The sequential worker: claim a job, run its stage under a lease, commit or fail.

The stage protocol (reliability.md §7.6) for every job:

1. claim (one short transaction: job id, lease token, timeout);
2. run the kind's handler while a :class:`~dsa_stream.registry.LeaseKeeper`
   renews the lease; handlers run heavy work in child process groups with the
   job's hard timeout, and stop them when ``run.cancel`` is set (lease lost,
   operator cancel, abort);
3. commit in one transaction: fenced completion, product rows, group update and
   the next jobs (the handler's :class:`StageOutcome`);
4. on a :class:`~dsa_stream.exceptions.DsaStreamError`: fenced failure (retry
   with backoff, or dead when permanent / attempts exhausted). Anything else is
   a bug: it propagates and crashes the worker loudly; the lease lapses and the
   reaper counts the attempt.

A lost lease commits nothing. Stopping: :meth:`Worker.request_stop` finishes the
running stage first; :meth:`Worker.abort` kills it and leaves the job to be retried.

Gating: an optional ``gate`` (the daemon's disk and memory guards) is asked before
every claim which job kinds may start now; kinds it holds back stay queued (a
paused worker keeps heartbeating and never fails a job for it), and
:attr:`Worker.paused_reason` says why. :meth:`Worker.snapshot` is what the
daemon's health and status report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from dsa_stream import naming
from dsa_stream.exceptions import DsaStreamError, LeaseLostError, RegistryError
from dsa_stream.logctx import file_handler, log_context
from dsa_stream.pipeline.context import Handler, PipelineContext, StageOutcome, StageRun
from dsa_stream.products.fsops import crash_point
from dsa_stream.registry import Claim, ErrorClass, LeaseKeeper, StopMode, WorkerIdentity
from dsa_stream.registry.models import jobs
from dsa_stream.registry.workers import WorkerNotActiveError

logger = logging.getLogger(__name__)

#: Longest wait between retries while the registry fails.
DB_BACKOFF_MAX_S = 30.0


class GateDecision(NamedTuple):
    """What a gate allows: the job kinds that may be claimed now, and why others wait."""

    kinds: tuple[str, ...]
    """Kinds that may start now (empty: claim nothing, the worker is paused)."""
    reason: str | None = None
    """Why some or all kinds are held back (None: nothing is held back)."""


#: Asked before each claim with the worker's kinds; never fails a job.
Gate = Callable[[Sequence[str]], GateDecision]


class WorkerSnapshot(BaseModel):
    """What the worker is doing now (for health and status; thread-safe to take)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker_id: str
    state: str
    """``starting``, ``idle``, ``paused``, ``running``, ``stopping`` or ``exited``."""
    job_id: int | None = None
    kind: str | None = None
    group_key: str | None = None
    attempt: int | None = None
    stage_elapsed_s: float | None = None
    paused_reason: str | None = None
    loop_age_s: float | None = None
    """Seconds since the worker loop last went round (None before it started)."""


class WorkerReport(BaseModel):
    """What one :meth:`Worker.run` did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker_id: str
    succeeded: int
    failed: int
    lost: int
    cancelled: int
    exit_reason: str


class Worker:
    """Claims and runs jobs one at a time (module docstring).

    Args:
        ctx: Settings, store and site roots.
        handlers: Job kind -> handler.
        kinds: Kinds this worker claims (default: every kind it has a handler for).
        poll_s: Idle wait between claims.
        gate: Asked before each claim which kinds may start (disk/memory guards).
    """

    def __init__(
        self,
        ctx: PipelineContext,
        handlers: Mapping[str, Handler],
        *,
        kinds: Sequence[str] | None = None,
        poll_s: float = 1.0,
        gate: Gate | None = None,
    ) -> None:
        self.ctx = ctx
        self.handlers = dict(handlers)
        self.kinds = list(kinds) if kinds is not None else sorted(self.handlers)
        self.poll_s = poll_s
        self.identity = WorkerIdentity.current(ctx.settings.config_hash())
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._current_cancel: threading.Event | None = None
        self._counts = {"succeeded": 0, "failed": 0, "lost": 0, "cancelled": 0}
        self.gate = gate
        self.paused_reason: str | None = None
        self._paused_since: float | None = None
        self._state = "starting"
        self._current: Claim | None = None
        self._stage_started: float | None = None
        self._loop_at: float | None = None
        self._next_reap = 0.0

    @property
    def worker_id(self) -> str:
        """This worker's registry id."""
        return self.identity.id

    def request_stop(self) -> None:
        """Finish the running stage, then exit (first SIGTERM/SIGINT)."""
        self._stop.set()

    def abort(self) -> None:
        """Kill the running stage and leave its job to be retried (second signal)."""
        self._abort.set()
        self._stop.set()
        if self._current_cancel is not None:
            self._current_cancel.set()

    def snapshot(self) -> WorkerSnapshot:
        """What the worker is doing now."""
        claim, started, loop_at = self._current, self._stage_started, self._loop_at
        now = time.monotonic()
        state = self._state
        if state in ("idle", "paused", "running") and self._stop.is_set():
            state = "stopping"
        return WorkerSnapshot(
            worker_id=self.worker_id,
            state=state,
            job_id=claim.job_id if claim else None,
            kind=claim.kind if claim else None,
            group_key=(claim.payload or {}).get("group_key") if claim else None,
            attempt=claim.attempt if claim else None,
            stage_elapsed_s=round(now - started, 1) if claim and started else None,
            paused_reason=self.paused_reason,
            loop_age_s=round(now - loop_at, 1) if loop_at is not None else None,
        )

    def _claimable_kinds(self) -> list[str]:
        """The kinds the gate lets start now (all of them without a gate)."""
        if self.gate is None:
            return self.kinds
        decision = self.gate(self.kinds)
        before, after = _topic(self.paused_reason), _topic(decision.reason)
        if after != before:  # log transitions, not every changing free-space figure
            if decision.reason is None:
                waited = time.monotonic() - (self._paused_since or time.monotonic())
                logger.info("claiming resumed (held back %.0f s)", waited)
                self._paused_since = None
            else:
                logger.warning("claiming held back: %s", decision.reason)
                self._paused_since = self._paused_since or time.monotonic()
        self.paused_reason = decision.reason
        return [k for k in self.kinds if k in decision.kinds]

    def _pending(self) -> int:
        """Queued or running jobs of this worker's kinds (for burst mode)."""
        with self.ctx.store.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        jobs.c.state.in_(["queued", "running"]), jobs.c.kind.in_(self.kinds)
                    )
                ).scalar_one()
            )

    def run(
        self,
        stop_event: threading.Event | None = None,
        *,
        burst: bool = False,
        max_jobs: int | None = None,
        max_idle_s: float | None = None,
    ) -> WorkerReport:
        """Work until stopped; ``burst`` exits once no queued or running job is left.

        A registry failure (database down, lock timeout) does not end the loop: it is
        logged and retried with backoff (up to :data:`DB_BACKOFF_MAX_S`); a job whose
        commit failed that way is retried after its lease lapses.
        """
        store = self.ctx.store
        store.start_worker(self.identity)
        reason = "stopped"
        try:
            with log_context(worker_id=self.worker_id[:8]):
                reason = self._loop(stop_event, burst, max_jobs, max_idle_s)
        except WorkerNotActiveError as exc:
            # Declared dead (nothing to mark) or asked to drain/stop while idle.
            reason = f"may not claim: {exc}"
            logger.warning("worker %s: %s", self.worker_id, exc)
        except BaseException as exc:
            reason = f"crashed: {type(exc).__name__}: {exc}"
            raise
        finally:
            self._state = "exited"
            store.stop_worker(self.worker_id, reason)  # no-op unless still active/draining
        logger.info("worker %s exits: %s (%s)", self.worker_id, reason, self._counts)
        return WorkerReport(worker_id=self.worker_id, exit_reason=reason, **self._counts)

    def _loop(
        self,
        stop_event: threading.Event | None,
        burst: bool,
        max_jobs: int | None,
        max_idle_s: float | None,
    ) -> str:
        """The claim loop of :meth:`run`; returns why it ended."""
        wait = stop_event or self._stop
        idle_since = time.monotonic()
        done = failures = 0
        while True:
            self._loop_at = time.monotonic()
            if self._stop.is_set() or (stop_event is not None and stop_event.is_set()):
                return "aborted" if self._abort.is_set() else "stop requested"
            try:
                ran, reason = self._tick(burst)
            except WorkerNotActiveError:
                raise
            except (SQLAlchemyError, RegistryError) as exc:
                failures += 1
                delay = min(self.poll_s * 2**failures, DB_BACKOFF_MAX_S)
                logger.error("registry error (retrying in %.1f s): %s", delay, exc)
                wait.wait(delay)
                continue
            failures = 0
            if ran:
                done += 1
                idle_since = time.monotonic()
            if reason is not None:
                return reason
            if max_jobs is not None and done >= max_jobs:
                return "max jobs"
            if ran:
                continue
            if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                return "idle"
            wait.wait(self.poll_s)

    def _tick(self, burst: bool) -> tuple[bool, str | None]:
        """Reap when due, then claim and run one job or heartbeat.

        Returns:
            (whether a job ran, why the loop must end or None).
        """
        store = self.ctx.store
        if time.monotonic() >= self._next_reap:
            store.reap()
            self._next_reap = time.monotonic() + store.config.reap_interval_s
        kinds = self._claimable_kinds()
        claim = store.claim(self.worker_id, kinds=kinds) if kinds else None
        self._state = "idle" if kinds else "paused"
        if claim is not None:
            mode = self._process(claim)
            return True, (f"operator {mode}" if mode is not None else None)
        mode = store.heartbeat_worker(self.worker_id)
        if mode is not None:
            return False, f"operator {mode}"
        if burst and self._pending() == 0:
            return False, "burst: nothing left"
        return False, None

    def _log_path(self, claim: Claim) -> Path:
        name = naming.job_log_filename(claim.job_id, claim.kind, claim.attempt)
        return self.ctx.roots["logs"] / "jobs" / name

    def _process(self, claim: Claim) -> StopMode | None:
        """Run one claimed job to a committed end; returns an operator stop request."""
        handler = self.handlers.get(claim.kind)
        group_key = (claim.payload or {}).get("group_key")
        with log_context(job_id=claim.job_id, stage=claim.kind, group_key=group_key):
            if handler is None:
                self.ctx.store.fail(
                    claim, f"no handler for job kind {claim.kind!r}", permanent=True
                )
                self._counts["failed"] += 1
                return None
            log_path = self._log_path(claim)
            job_log = file_handler(log_path, self.ctx.settings.logging.format)
            job_log.addFilter(_JobRecords(claim.job_id))
            logging.getLogger().addHandler(job_log)
            try:
                return self._run_claim(claim, handler, log_path)
            finally:
                self._current_cancel = None
                self._current, self._stage_started, self._state = None, None, "idle"
                logging.getLogger().removeHandler(job_log)
                job_log.close()

    def _run_claim(self, claim: Claim, handler: Handler, log_path: Path) -> StopMode | None:
        cancel = threading.Event()
        self._current_cancel = cancel
        self._current, self._stage_started, self._state = claim, time.monotonic(), "running"
        if self._abort.is_set():
            cancel.set()
        logger.info("job %s (%s) attempt %d started", claim.job_id, claim.kind, claim.attempt)
        outcome: StageOutcome | None = None
        error: DsaStreamError | None = None
        with LeaseKeeper(
            self.ctx.store, claim, on_lost=lambda _r: cancel.set(), on_cancel=cancel.set
        ) as lease:
            run = StageRun(claim, cancel, log_path, lease.set_progress)
            try:
                outcome = handler(self.ctx, run)
            except DsaStreamError as exc:
                error = exc
        self._current_cancel = None
        self._finish(claim, lease, outcome, error)
        if lease.stop_requested is StopMode.KILL:
            return StopMode.KILL
        return lease.stop_requested

    def _finish(
        self,
        claim: Claim,
        lease: LeaseKeeper,
        outcome: StageOutcome | None,
        error: DsaStreamError | None,
    ) -> None:
        store = self.ctx.store
        try:
            if lease.lost.is_set():
                logger.warning(
                    "job %s: lease lost (%s); nothing committed", claim.job_id, lease.reason
                )
                self._counts["lost"] += 1
            elif lease.cancel_requested.is_set():
                store.mark_cancelled(claim)
                self._counts["cancelled"] += 1
            elif self._abort.is_set() or lease.stop_requested is StopMode.KILL:
                store.fail(claim, "stage aborted by a stop request", retry_delay_s=0.0)
                self._counts["failed"] += 1
            elif error is not None:
                logger.error("job %s failed: %s", claim.job_id, error)
                store.fail(
                    claim,
                    f"{type(error).__name__}: {error}",
                    permanent=error.permanent,
                    error_class=ErrorClass.PERMANENT if error.permanent else None,
                )
                self._counts["failed"] += 1
            else:
                assert outcome is not None
                store.complete(
                    claim,
                    next_jobs=outcome.next_jobs,
                    products=outcome.products,
                    group_update=outcome.group_update,
                    in_transaction=outcome.in_transaction,
                    detail=outcome.detail,
                )
                crash_point(f"{claim.kind}:after_commit")  # fault injection (tests)
                logger.info("job %s (%s) succeeded", claim.job_id, claim.kind)
                self._counts["succeeded"] += 1
        except LeaseLostError as exc:
            logger.warning(
                "job %s: lease lost at commit (%s); nothing committed", claim.job_id, exc
            )
            self._counts["lost"] += 1


def _topic(reason: str | None) -> str | None:
    """The part of a gate reason before its first colon (``disk``, ``memory``)."""
    return None if reason is None else reason.split(":", 1)[0]


class _JobRecords(logging.Filter):
    """Pass only one job's records to its log file.

    The daemon runs other threads (ingest, reaper, HTTP) that log at the same time;
    their records belong in the daemon log, not in the stage's. Kept: records of the
    thread running the stage, of the job's lease keeper, and any record carrying the
    job's id in its log context.
    """

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.thread = threading.get_ident()
        self.lease_thread = f"lease-{job_id}"

    def filter(self, record: logging.LogRecord) -> bool:
        """True for records of this job (see the class docstring)."""
        if record.thread == self.thread or record.threadName == self.lease_thread:
            return True
        return getattr(record, "job_id", None) == self.job_id
