"""Operator actions on jobs: cancel and retry (reliability §7.3, §7.7).

* ``cancel``: a queued job becomes ``cancelled`` at once; a running job gets
  ``cancel_requested``, which its worker sees at the next heartbeat (it stops the
  stage and calls ``mark_cancelled``; the reaper cancels it if the worker is gone).
* ``retry``: a terminal (``dead`` or ``cancelled``) job is never revived. A *new*
  row with the same kind, dedupe key and parameters is inserted with
  ``requeue_of`` pointing at the old one; both rows get an audit event.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Row, select, update

from dsa_stream.exceptions import RegistryError
from dsa_stream.registry.models import jobs
from dsa_stream.registry.records import CancelResult, JobSpec, RetryResult
from dsa_stream.registry.states import (
    TERMINAL_JOB_STATES,
    GroupState,
    JobEvent,
    JobKind,
    JobState,
)
from dsa_stream.registry.txn import Txn

logger = logging.getLogger(__name__)

RETRYABLE_STATES = (JobState.DEAD, JobState.CANCELLED)


def _load(txn: Txn, job_id: int) -> Row[Any]:
    row = txn.conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update()).first()
    if row is None:
        raise RegistryError(f"no job with id {job_id}")
    return row


def cancel(txn: Txn, job_id: int, *, actor: str = "operator") -> CancelResult:
    """Cancel a job (see the module docstring).

    Raises:
        RegistryError: if the job does not exist.
    """
    row = _load(txn, job_id)
    state = JobState(row.state)
    if state in TERMINAL_JOB_STATES:
        return CancelResult(job_id=job_id, outcome="already_terminal", state=state)
    if state is JobState.QUEUED:
        result = txn.conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.state == str(JobState.QUEUED))
            .values(
                state=str(JobState.CANCELLED),
                error_class="cancelled",
                finished_at=txn.now,
                updated_at=txn.now,
            )
        )
        if result.rowcount == 1:
            txn.event(job_id, JobEvent.CANCELLED, state, JobState.CANCELLED, detail=f"by {actor}")
            logger.info("job %s cancelled by %s", job_id, actor)
            return CancelResult(job_id=job_id, outcome="cancelled", state=JobState.CANCELLED)
    txn.conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == str(JobState.RUNNING))
        .values(cancel_requested=True, updated_at=txn.now)
    )
    txn.event(
        job_id,
        JobEvent.CANCEL_REQUESTED,
        JobState.RUNNING,
        JobState.RUNNING,
        worker_id=row.lease_owner,
        lease_token=row.lease_token,
        detail=f"by {actor}; honoured at the worker's next heartbeat",
    )
    logger.info("job %s: cancel requested by %s", job_id, actor)
    return CancelResult(job_id=job_id, outcome="cancel_requested", state=JobState.RUNNING)


def retry(
    txn: Txn, job_id: int, *, actor: str = "operator", reason: str | None = None
) -> RetryResult:
    """Insert a new job for a dead or cancelled one, linked by ``requeue_of``.

    Raises:
        RegistryError: if the job does not exist, is not dead/cancelled, or another job
            already holds its dedupe key (queued, running or succeeded).
    """
    row = _load(txn, job_id)
    state = JobState(row.state)
    if state not in RETRYABLE_STATES:
        raise RegistryError(f"job {job_id} is {state}: only dead or cancelled jobs can be retried")
    try:
        kind = JobKind(row.kind)
    except ValueError as exc:
        raise RegistryError(f"job {job_id} has an unknown kind {row.kind!r}") from exc
    spec = JobSpec(
        kind=kind,
        dedupe_key=row.dedupe_key,
        order_key=row.order_key,
        group_id=row.group_id,
        window_id=row.window_id,
        priority=row.priority,
        max_attempts=row.max_attempts,
        timeout_s=row.timeout_s,
        payload=row.payload,
    )
    result = txn.enqueue(spec, requeue_of=job_id)
    if not result.created:
        raise RegistryError(
            f"job {job_id} not retried: job {result.job_id} already holds its key "
            f"{spec.dedupe_key!r} ({result.state})"
        )
    why = f" ({reason})" if reason else ""
    txn.event(
        job_id,
        JobEvent.RETRIED,
        state,
        state,
        detail=f"retried by {actor} as job {result.job_id}{why}",
    )
    if spec.group_id is not None:
        txn.set_group_state(spec.group_id, GroupState.PROCESSING, reason=f"retry of job {job_id}")
    logger.info("job %s retried by %s as job %s", job_id, actor, result.job_id)
    return RetryResult(old_job_id=job_id, new_job_id=result.job_id)
