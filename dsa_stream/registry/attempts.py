"""Ending an attempt that did not succeed: failure, lease expiry, dead worker.

One rule for the worker's own ``fail`` and for the reaper (reliability §7.3):

* the job had ``cancel_requested`` -> ``cancelled``;
* permanent error, or ``attempt >= max_attempts`` -> ``dead`` (its group -> ``failed``);
* otherwise -> ``queued`` again, claimable after the exponential backoff with jitter.

Every write is fenced by ``(id, state='running', lease_token)``: a stale token
changes nothing.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from dsa_stream.config import WorkerConfig
from dsa_stream.registry import workers as worker_rows
from dsa_stream.registry.models import jobs
from dsa_stream.registry.records import FailureResult, Record
from dsa_stream.registry.states import ErrorClass, GroupState, JobEvent, JobState, backoff_delay_s
from dsa_stream.registry.txn import Txn, clip


class AttemptEnd(Record):
    """How an attempt ended (input of :func:`end_attempt`)."""

    job_id: int
    lease_token: int
    attempt: int
    max_attempts: int
    worker_id: str | None
    group_id: int | None
    error_class: ErrorClass
    detail: str
    permanent: bool = False
    delay_s: float | None = None
    """Override of the backoff delay (None: the configured backoff)."""
    event: JobEvent = JobEvent.FAILED


def fence(job_id: int, lease_token: int) -> tuple[Any, ...]:
    """WHERE clauses that only match the job while this lease is current."""
    return (
        jobs.c.id == job_id,
        jobs.c.state == str(JobState.RUNNING),
        jobs.c.lease_token == lease_token,
    )


def retry_delay_s(attempt: int, cfg: WorkerConfig, rng: random.Random | None) -> float:
    """The configured backoff after failed attempt number ``attempt``."""
    return backoff_delay_s(
        attempt,
        base_s=cfg.backoff_base_s,
        max_s=cfg.backoff_max_s,
        jitter=cfg.backoff_jitter,
        rng=rng,
    )


def _target(end: AttemptEnd, cancel_requested: bool) -> JobState:
    if cancel_requested:
        return JobState.CANCELLED
    if end.permanent or end.attempt >= end.max_attempts:
        return JobState.DEAD
    return JobState.QUEUED


def _values(
    txn: Txn,
    end: AttemptEnd,
    to_state: JobState,
    error_class: ErrorClass,
    cfg: WorkerConfig,
    rng: random.Random | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "state": str(to_state),
        "error_class": str(error_class),
        "last_error": clip(end.detail),
        "updated_at": txn.now,
        "progress": None,
    }
    if to_state is JobState.QUEUED:
        delay = end.delay_s if end.delay_s is not None else retry_delay_s(end.attempt, cfg, rng)
        values.update(
            available_at=txn.now + timedelta(seconds=delay),
            lease_owner=None,
            lease_expires_at=None,
        )
    else:
        values["finished_at"] = txn.now
    return values


def end_attempt(
    txn: Txn, end: AttemptEnd, cfg: WorkerConfig, rng: random.Random | None
) -> FailureResult | None:
    """Apply the rule of the module docstring; None when the lease is no longer current."""
    row = txn.conn.execute(
        select(jobs.c.cancel_requested).where(*fence(end.job_id, end.lease_token)).with_for_update()
    ).first()
    if row is None:
        return None
    to_state = _target(end, bool(row.cancel_requested))
    error_class = ErrorClass.CANCELLED if to_state is JobState.CANCELLED else end.error_class
    values = _values(txn, end, to_state, error_class, cfg, rng)
    available_at: datetime | None = values.get("available_at")
    result = txn.conn.execute(
        update(jobs).where(*fence(end.job_id, end.lease_token)).values(values)
    )
    if result.rowcount != 1:
        return None
    txn.event(
        end.job_id,
        end.event,
        JobState.RUNNING,
        to_state,
        worker_id=end.worker_id,
        lease_token=end.lease_token,
        attempt=end.attempt,
        detail=f"{error_class}: {end.detail}",
    )
    if end.worker_id is not None:
        worker_rows.clear_current_job(txn, end.worker_id, end.job_id)
    if to_state is JobState.DEAD and end.group_id is not None:
        txn.set_group_state(
            end.group_id,
            GroupState.FAILED,
            reason=f"job {end.job_id} dead after attempt {end.attempt}: {end.detail}",
        )
    return FailureResult(
        job_id=end.job_id,
        state=to_state,
        attempt=end.attempt,
        available_at=available_at,
        error_class=error_class,
    )
