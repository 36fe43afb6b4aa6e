"""The job store: claim under a lease, heartbeat, complete, fail, reap (reliability §7.4).

Protocol of a worker (see also :class:`~dsa_stream.registry.lease.LeaseKeeper`)::

    store = JobStore.from_settings(settings)
    start = store.start_worker(WorkerIdentity.current(settings.config_hash()))
    while running:
        claim = store.claim(start.worker_id)          # None: nothing claimable now
        with LeaseKeeper(store, claim, ...) as lease:  # heartbeat thread, self-fence
            run the stage (child process group, hard timeout, stop if lease.lost)
        store.complete(claim, next_jobs=[...], products=[...], group_update=...)
        # or store.fail(claim, error, permanent=...)

Time: every transaction has one ``now``. With an injected ``clock`` (tests, replay)
that clock is used on both dialects, inside SQL as a bound parameter. Without it,
SQLite uses this host's clock and PostgreSQL the server's ``clock_timestamp()``
(the claim statement calls it inline; other transactions read it once at their
start), so clock skew between hosts cannot shorten leases.

Fencing: a claim increments ``lease_token``; every later write of that attempt
is an UPDATE conditioned on ``(id, state='running', lease_token)``. When it
matches no row the lease is gone: :class:`~dsa_stream.exceptions.LeaseLostError`
is raised, the transaction is rolled back and the worker must stop the stage.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update

from dsa_stream.config import Settings, WorkerConfig
from dsa_stream.exceptions import LeaseLostError
from dsa_stream.registry import admin, reaper
from dsa_stream.registry import workers as worker_rows
from dsa_stream.registry.attempts import AttemptEnd, end_attempt, fence
from dsa_stream.registry.claimsql import GROUP_PROCESSING, SUCCEED, claim_statement
from dsa_stream.registry.db import db_now, is_postgres, make_engine
from dsa_stream.registry.models import jobs, workers
from dsa_stream.registry.records import (
    CancelResult,
    Claim,
    CompletionResult,
    EnqueueResult,
    FailureResult,
    GroupUpdate,
    HeartbeatResult,
    JobSpec,
    ProductSpec,
    ReapResult,
    RetryResult,
)
from dsa_stream.registry.states import (
    ErrorClass,
    JobEvent,
    JobState,
    StopMode,
    WorkerState,
)
from dsa_stream.registry.txn import Txn
from dsa_stream.registry.workers import WorkerIdentity, WorkerNotActiveError, WorkerStart

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
TxnCallback = Callable[[Txn], None]


def _to_claim(row: Any, worker_id: str) -> Claim:
    return Claim(
        job_id=row.id,
        kind=row.kind,
        worker_id=worker_id,
        lease_token=row.lease_token,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        timeout_s=row.timeout_s,
        dedupe_key=row.dedupe_key,
        order_key=row.order_key,
        group_id=row.group_id,
        window_id=row.window_id,
        payload=row.payload,
        claimed_at=row.heartbeat_at,
        lease_expires_at=row.lease_expires_at,
    )


def _commit_effects(
    txn: Txn,
    claim: Claim,
    products: Iterable[ProductSpec],
    group_update: GroupUpdate | None,
    next_jobs: Iterable[JobSpec],
) -> CompletionResult:
    product_ids = tuple(
        txn.add_product(p, job_id=claim.job_id, lease_token=claim.lease_token) for p in products
    )
    moved = None
    if group_update is not None:
        moved = txn.set_group_state(
            group_update.group_id,
            group_update.state,
            stage=group_update.stage,
            reason=group_update.reason,
        )
    enqueued = tuple(txn.enqueue(spec) for spec in next_jobs)
    return CompletionResult(
        job_id=claim.job_id, next_jobs=enqueued, product_ids=product_ids, group_updated=moved
    )


class JobStore:
    """Jobs, workers and their leases in the registry database (see the module docstring).

    Args:
        engine: A write engine from :func:`~dsa_stream.registry.db.make_engine`.
        config: Lease, heartbeat, reaper and retry numbers.
        clock: Injectable source of ``now`` (aware UTC); None for real time.
        rng: Source of the backoff jitter (seed it in tests).
    """

    def __init__(
        self,
        engine: Engine,
        config: WorkerConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or WorkerConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self._postgres = is_postgres(engine)
        self._claim_sql = {k: claim_statement(self._postgres, k) for k in (False, True)}

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> JobStore:
        """A store on the site's registry (run migrations first: ``upgrade_registry``)."""
        engine = make_engine(settings.registry_url(), settings.registry)
        return cls(engine, settings.worker, clock=clock)

    def close(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()

    def now(self) -> datetime:
        """The store's current time (injected clock, PostgreSQL server time, or host time)."""
        if self.clock is not None:
            return self.clock()
        with self.engine.connect() as conn:
            return db_now(conn)

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        """One short write transaction (commit on exit, roll back on exception)."""
        with self.engine.begin() as conn:
            now = self.clock() if self.clock is not None else db_now(conn)
            yield Txn(conn, now, self.config)

    def enqueue(self, spec: JobSpec) -> EnqueueResult:
        """Enqueue one job idempotently (see :meth:`Txn.enqueue`)."""
        with self.transaction() as txn:
            return txn.enqueue(spec)

    # -- claim ------------------------------------------------------------------

    def claim(self, worker_id: str, *, kinds: Sequence[str] | None = None) -> Claim | None:
        """Claim the next job: highest priority, then earliest observation time, then id.

        One statement per dialect (module constants ``SQLITE_CLAIM``/``POSTGRES_CLAIM``).
        Only an ``active`` worker without a stop request can claim.

        Returns:
            The claim, or None when nothing is claimable now.

        Raises:
            WorkerNotActiveError: if the worker is dead, stopped, draining or asked to stop.
        """
        params: dict[str, Any] = {"wid": worker_id}
        if kinds:
            params["kinds"] = [str(k) for k in kinds]
        with self.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, the write lock is ours
            now = self.clock() if self.clock is not None else None
            if self._postgres:
                params.update(now=now, lease_s=float(self.config.lease_s))
            else:
                now = now or datetime.now(UTC)
                params.update(now=now, expires=now + timedelta(seconds=self.config.lease_s))
            row = conn.execute(self._claim_sql[bool(kinds)], params).first()
            if row is None:
                state = conn.execute(
                    select(workers.c.state, workers.c.stop_requested).where(
                        workers.c.id == worker_id
                    )
                ).first()
            else:
                txn = Txn(conn, row.heartbeat_at, self.config)
                self._after_claim(txn, row, worker_id)
        if row is None:
            if state is None or state.state != WorkerState.ACTIVE or state.stop_requested:
                why = "unknown" if state is None else f"{state.state}, stop={state.stop_requested}"
                raise WorkerNotActiveError(f"worker {worker_id} may not claim ({why})")
            return None
        return _to_claim(row, worker_id)

    @staticmethod
    def _after_claim(txn: Txn, row: Any, worker_id: str) -> None:
        txn.event(
            row.id,
            JobEvent.CLAIMED,
            JobState.QUEUED,
            JobState.RUNNING,
            worker_id=worker_id,
            lease_token=row.lease_token,
            attempt=row.attempt,
        )
        worker_rows.set_current_job(txn, worker_id, row.id)
        if row.group_id is not None:
            txn.conn.execute(GROUP_PROCESSING, {"b_group": row.group_id, "b_now": txn.now})

    # -- heartbeat / complete / fail ---------------------------------------------

    def heartbeat(self, claim: Claim, *, progress: float | None = None) -> HeartbeatResult:
        """Renew the worker's heartbeat and the job's lease (one short transaction).

        Raises:
            LeaseLostError: the lease is gone (token stale, job reaped or finished):
                stop the stage at once; nothing was changed.
        """
        with self.transaction() as txn:
            try:
                stop = worker_rows.heartbeat(txn, claim.worker_id)
            except WorkerNotActiveError:
                stop = StopMode.KILL
            expires = txn.now + timedelta(seconds=self.config.lease_s)
            values: dict[str, Any] = {"lease_expires_at": expires, "heartbeat_at": txn.now}
            if progress is not None:
                values["progress"] = min(max(progress, 0.0), 1.0)
            row = txn.conn.execute(
                update(jobs)
                .where(*fence(claim.job_id, claim.lease_token))
                .values(values)
                .returning(jobs.c.cancel_requested)
            ).first()
            if row is None:
                raise LeaseLostError(
                    f"job {claim.job_id}: lease token {claim.lease_token} is no longer current"
                )
        return HeartbeatResult(
            lease_expires_at=expires,
            cancel_requested=bool(row.cancel_requested),
            stop_requested=stop,
        )

    def complete(
        self,
        claim: Claim,
        *,
        next_jobs: Iterable[JobSpec] = (),
        products: Iterable[ProductSpec] = (),
        group_update: GroupUpdate | None = None,
        in_transaction: TxnCallback | None = None,
        detail: str | None = None,
    ) -> CompletionResult:
        """Mark the job succeeded and commit its effects in the same transaction.

        In order: the fenced UPDATE, the audit event, ``products`` (+ lineage), the
        group transition, the next jobs (deduplicated), then ``in_transaction(txn)``
        for anything else (e.g. mosaic-window rows). Any exception rolls it all back.

        Raises:
            LeaseLostError: the lease is gone; nothing was committed.
            ProductConflictError: a product key belongs to another job.
        """
        with self.transaction() as txn:
            updated = txn.conn.execute(
                SUCCEED, {"b_job": claim.job_id, "b_token": claim.lease_token, "b_now": txn.now}
            )
            if updated.rowcount != 1:
                raise LeaseLostError(
                    f"job {claim.job_id}: completion with stale lease token {claim.lease_token} "
                    "rejected"
                )
            txn.event(
                claim.job_id,
                JobEvent.SUCCEEDED,
                JobState.RUNNING,
                JobState.SUCCEEDED,
                worker_id=claim.worker_id,
                lease_token=claim.lease_token,
                attempt=claim.attempt,
                detail=detail,
            )
            worker_rows.clear_current_job(txn, claim.worker_id, claim.job_id)
            result = _commit_effects(txn, claim, products, group_update, next_jobs)
            if in_transaction is not None:
                in_transaction(txn)
        return result

    def fail(
        self,
        claim: Claim,
        error: str,
        *,
        permanent: bool = False,
        error_class: ErrorClass | None = None,
        retry_delay_s: float | None = None,
        in_transaction: TxnCallback | None = None,
    ) -> FailureResult:
        """End a failed attempt (fenced by the claim's lease token).

        The job goes back to ``queued`` with backoff, or to ``dead`` (permanent error or
        attempts exhausted; its group becomes ``failed``), or to ``cancelled`` if a
        cancel was pending.

        Raises:
            LeaseLostError: the lease is gone; nothing was changed.
        """
        cls = error_class or (ErrorClass.PERMANENT if permanent else ErrorClass.TRANSIENT)
        end = AttemptEnd(
            job_id=claim.job_id,
            lease_token=claim.lease_token,
            attempt=claim.attempt,
            max_attempts=claim.max_attempts,
            worker_id=claim.worker_id,
            group_id=claim.group_id,
            error_class=cls,
            detail=error,
            permanent=permanent,
            delay_s=retry_delay_s,
        )
        with self.transaction() as txn:
            result = end_attempt(txn, end, self.config, self.rng)
            if result is None:
                raise LeaseLostError(
                    f"job {claim.job_id}: failure with stale lease token {claim.lease_token} "
                    "rejected"
                )
            if in_transaction is not None:
                in_transaction(txn)
        return result

    def mark_cancelled(self, claim: Claim, detail: str = "cancel honoured") -> None:
        """The worker stopped the stage after ``cancel_requested``: job -> ``cancelled``.

        Raises:
            LeaseLostError: the lease is gone; nothing was changed.
        """
        with self.transaction() as txn:
            result = txn.conn.execute(
                update(jobs)
                .where(*fence(claim.job_id, claim.lease_token))
                .values(
                    state=str(JobState.CANCELLED),
                    error_class=str(ErrorClass.CANCELLED),
                    finished_at=txn.now,
                    updated_at=txn.now,
                )
            )
            if result.rowcount != 1:
                raise LeaseLostError(f"job {claim.job_id}: lease lost before cancel")
            txn.event(
                claim.job_id,
                JobEvent.CANCELLED,
                JobState.RUNNING,
                JobState.CANCELLED,
                worker_id=claim.worker_id,
                lease_token=claim.lease_token,
                attempt=claim.attempt,
                detail=detail,
            )
            worker_rows.clear_current_job(txn, claim.worker_id, claim.job_id)

    # -- operator ---------------------------------------------------------------

    def cancel(self, job_id: int, *, actor: str = "operator") -> CancelResult:
        """Cancel a job (queued: at once; running: at its next heartbeat)."""
        with self.transaction() as txn:
            return admin.cancel(txn, job_id, actor=actor)

    def retry(
        self, job_id: int, *, actor: str = "operator", reason: str | None = None
    ) -> RetryResult:
        """Requeue a dead or cancelled job as a new row linked by ``requeue_of``."""
        with self.transaction() as txn:
            return admin.retry(txn, job_id, actor=actor, reason=reason)

    # -- workers and the reaper -------------------------------------------------

    def start_worker(self, identity: WorkerIdentity) -> WorkerStart:
        """Register a worker, then run one reaper pass.

        The pass declares dead the workers that cannot be alive (same host: pid gone
        or reused, host rebooted; any host: heartbeat older than 3 leases) and
        requeues their jobs.
        """
        with self.transaction() as txn:
            worker_rows.register(txn, identity)
        reaped = self.reap()
        return WorkerStart(
            worker_id=identity.id,
            stale_workers=reaped.workers_dead,
            requeued_jobs=reaped.requeued,
            dead_jobs=reaped.dead,
        )

    def heartbeat_worker(self, worker_id: str) -> StopMode | None:
        """Idle heartbeat of a worker; returns the operator's stop request, if any.

        Raises:
            WorkerNotActiveError: the worker was declared dead or stopped: exit.
        """
        with self.transaction() as txn:
            return worker_rows.heartbeat(txn, worker_id)

    def request_stop(self, worker_id: str, mode: StopMode) -> bool:
        """Ask a worker to drain or stop; returns False if it is not live."""
        with self.transaction() as txn:
            return worker_rows.request_stop(txn, worker_id, mode)

    def stop_worker(self, worker_id: str, reason: str = "stopped") -> bool:
        """Mark a worker stopped at a clean exit (any job it still held gets reaped)."""
        with self.transaction() as txn:
            return worker_rows.stop(txn, worker_id, reason)

    def reap(self, *, limit: int | None = None) -> ReapResult:
        """One reaper pass (dead workers, lapsed leases); see :mod:`~dsa_stream.registry.reaper`."""
        with self.transaction() as txn:
            return reaper.reap(txn, self.config, limit=limit, rng=self.rng)
