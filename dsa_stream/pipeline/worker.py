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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from dsa_stream import naming
from dsa_stream.exceptions import DsaStreamError, LeaseLostError
from dsa_stream.logctx import file_handler, log_context
from dsa_stream.pipeline.context import Handler, PipelineContext, StageOutcome, StageRun
from dsa_stream.registry import Claim, ErrorClass, LeaseKeeper, StopMode, WorkerIdentity
from dsa_stream.registry.models import jobs
from dsa_stream.registry.workers import WorkerNotActiveError

logger = logging.getLogger(__name__)


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
    """

    def __init__(
        self,
        ctx: PipelineContext,
        handlers: Mapping[str, Handler],
        *,
        kinds: Sequence[str] | None = None,
        poll_s: float = 1.0,
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
        """Work until stopped; ``burst`` exits once no queued or running job is left."""
        store = self.ctx.store
        store.start_worker(self.identity)
        reason = "stopped"
        next_reap = 0.0
        idle_since = time.monotonic()
        done = 0
        try:
            with log_context(worker_id=self.worker_id[:8]):
                while True:
                    if self._stop.is_set() or (stop_event is not None and stop_event.is_set()):
                        reason = "aborted" if self._abort.is_set() else "stop requested"
                        break
                    if time.monotonic() >= next_reap:
                        store.reap()
                        next_reap = time.monotonic() + store.config.reap_interval_s
                    claim = store.claim(self.worker_id, kinds=self.kinds)
                    if claim is not None:
                        mode = self._process(claim)
                        done += 1
                        idle_since = time.monotonic()
                        if mode is not None:
                            reason = f"operator {mode}"
                            break
                        if max_jobs is not None and done >= max_jobs:
                            reason = "max jobs"
                            break
                        continue
                    mode = store.heartbeat_worker(self.worker_id)
                    if mode is not None:
                        reason = f"operator {mode}"
                        break
                    if burst and self._pending() == 0:
                        reason = "burst: nothing left"
                        break
                    if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                        reason = "idle"
                        break
                    (stop_event or self._stop).wait(self.poll_s)
        except WorkerNotActiveError as exc:
            reason = f"declared inactive: {exc}"
            logger.error("worker %s: %s", self.worker_id, exc)
        finally:
            if not reason.startswith("declared inactive"):
                store.stop_worker(self.worker_id, reason)
        logger.info("worker %s exits: %s (%s)", self.worker_id, reason, self._counts)
        return WorkerReport(worker_id=self.worker_id, exit_reason=reason, **self._counts)

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
            logging.getLogger().addHandler(job_log)
            try:
                return self._run_claim(claim, handler, log_path)
            finally:
                logging.getLogger().removeHandler(job_log)
                job_log.close()

    def _run_claim(self, claim: Claim, handler: Handler, log_path: Path) -> StopMode | None:
        cancel = threading.Event()
        self._current_cancel = cancel
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
                logger.info("job %s (%s) succeeded", claim.job_id, claim.kind)
                self._counts["succeeded"] += 1
        except LeaseLostError as exc:
            logger.warning(
                "job %s: lease lost at commit (%s); nothing committed", claim.job_id, exc
            )
            self._counts["lost"] += 1
