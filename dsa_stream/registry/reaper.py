"""The reaper: dead workers and lapsed leases (reliability §7.4 "Reap").

One pass, in one short transaction:

1. declare dead the workers that cannot be alive (:func:`workers.sweep`);
2. end the attempt of every running job whose lease lapsed or whose owner is
   dead/stopped, in a bounded batch: ``queued`` with backoff, ``dead`` when its
   attempts are exhausted, ``cancelled`` when a cancel was pending. The expiry
   counts as an attempt, so a job that keeps killing its workers ends ``dead``.

On PostgreSQL the pass runs under ``pg_try_advisory_xact_lock`` so only one host
reaps at a time (the others skip), and the batch is selected ``FOR UPDATE SKIP
LOCKED``. Run it every ``reap_interval_s`` and at worker start.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from sqlalchemy import Row, exists, or_, select, text

from dsa_stream.config import WorkerConfig
from dsa_stream.registry import workers as worker_rows
from dsa_stream.registry.attempts import AttemptEnd, end_attempt
from dsa_stream.registry.db import is_postgres
from dsa_stream.registry.models import jobs, workers
from dsa_stream.registry.records import ReapResult
from dsa_stream.registry.states import ErrorClass, JobEvent, JobState, WorkerState
from dsa_stream.registry.txn import Txn

logger = logging.getLogger(__name__)

#: pg_try_advisory_xact_lock key of the reaper (arbitrary constant, "dsareap").
REAPER_LOCK_KEY = 0x6473617265617000


def _expired_batch(txn: Txn, limit: int) -> list[Row[Any]]:
    owner = workers.alias("owner")
    owner_gone = exists().where(
        owner.c.id == jobs.c.lease_owner,
        owner.c.state.in_([str(WorkerState.DEAD), str(WorkerState.STOPPED)]),
    )
    query = (
        select(
            jobs.c.id,
            jobs.c.lease_token,
            jobs.c.attempt,
            jobs.c.max_attempts,
            jobs.c.group_id,
            jobs.c.lease_owner,
            jobs.c.lease_expires_at,
        )
        .where(
            jobs.c.state == str(JobState.RUNNING),
            or_(jobs.c.lease_expires_at < txn.now, owner_gone),
        )
        .order_by(jobs.c.lease_expires_at, jobs.c.id)
        .limit(limit + 1)
    )
    if is_postgres(txn.conn):
        query = query.with_for_update(skip_locked=True, of=jobs)
    return list(txn.conn.execute(query).all())


def reap(
    txn: Txn, cfg: WorkerConfig, *, limit: int | None = None, rng: random.Random | None = None
) -> ReapResult:
    """One reaper pass inside ``txn`` (see the module docstring)."""
    if is_postgres(txn.conn):
        got = txn.conn.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": REAPER_LOCK_KEY}
        ).scalar_one()
        if not got:
            return ReapResult(skipped=True)
    dead_workers = worker_rows.sweep(txn, stale_after_s=cfg.stale_worker_leases * cfg.lease_s)
    batch = limit or cfg.reap_batch
    rows = _expired_batch(txn, batch)
    outcome: dict[JobState, list[int]] = {s: [] for s in JobState}
    for row in rows[:batch]:
        expired = row.lease_expires_at is not None and row.lease_expires_at < txn.now
        owner = row.lease_owner
        if expired:
            error_class, detail = (
                ErrorClass.LEASE_EXPIRED,
                f"lease expired: worker {owner} timed out",
            )
        else:
            error_class, detail = ErrorClass.WORKER_DEAD, f"worker {owner} is dead or stopped"
        end = AttemptEnd(
            job_id=row.id,
            lease_token=row.lease_token,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            worker_id=owner,
            group_id=row.group_id,
            error_class=error_class,
            detail=detail,
            event=JobEvent.REAPED,
        )
        result = end_attempt(txn, end, cfg, rng)
        if result is not None:
            outcome[result.state].append(end.job_id)
            logger.warning("job %s reaped -> %s (%s)", end.job_id, result.state, detail)
    return ReapResult(
        workers_dead=tuple(dead_workers),
        requeued=tuple(outcome[JobState.QUEUED]),
        dead=tuple(outcome[JobState.DEAD]),
        cancelled=tuple(outcome[JobState.CANCELLED]),
        more=len(rows) > batch,
    )
