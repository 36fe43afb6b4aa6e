"""Frozen value models passed into and out of the job store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dsa_stream.registry.states import (
    ErrorClass,
    GroupState,
    JobKind,
    JobState,
    ProductState,
    QaStatus,
    StopMode,
    ValidationStatus,
)


class Record(BaseModel):
    """Base of the registry's value models: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class JobSpec(Record):
    """A job to enqueue (alone, or inside a completion / group-complete transaction)."""

    kind: JobKind
    dedupe_key: str = Field(min_length=1, max_length=255)
    """At most one queued/running and one succeeded job per key, e.g. ``convert:<group>``."""
    order_key: AwareDatetime
    """Observation time the claim order follows (never the arrival time)."""
    group_id: int | None = None
    window_id: int | None = None
    priority: int | None = None
    """None: the kind's priority (:data:`~dsa_stream.registry.states.KIND_PRIORITY`)."""
    max_attempts: int | None = Field(None, ge=1)
    """None: ``worker.max_attempts`` of the configuration."""
    timeout_s: int | None = Field(None, ge=1)
    """None: ``worker.stage_timeouts_s[kind]``."""
    payload: dict[str, Any] | None = None
    """Small JSON-able parameters of the job (e.g. missing subbands)."""
    delay_s: float = Field(0.0, ge=0)
    """Not claimable before now + delay."""


class EnqueueResult(Record):
    """Outcome of an enqueue: the job that holds the dedupe key."""

    job_id: int
    created: bool
    """False when an active or succeeded job with the same key already existed."""
    state: JobState


class Claim(Record):
    """A job claimed under a lease; ``lease_token`` fences every later write."""

    job_id: int
    kind: str
    worker_id: str
    lease_token: int
    attempt: int
    max_attempts: int
    timeout_s: int
    dedupe_key: str
    order_key: datetime
    group_id: int | None
    window_id: int | None
    payload: dict[str, Any] | None
    claimed_at: datetime
    lease_expires_at: datetime


class HeartbeatResult(Record):
    """What a successful heartbeat tells the worker."""

    lease_expires_at: datetime
    cancel_requested: bool
    """The operator cancelled the job: stop the stage and call ``mark_cancelled``."""
    stop_requested: StopMode | None
    """The operator asked the worker to drain or stop (``kill``: abandon the job now)."""


class ProductSpec(Record):
    """A product row written in a completion transaction (fenced by the job's token)."""

    kind: str = Field(min_length=1, max_length=32)
    logical_key: str = Field(min_length=1, max_length=255)
    version: int = Field(1, ge=1)
    root_id: str = Field(min_length=1, max_length=64)
    rel_path: str = Field(min_length=1, max_length=1024)
    manifest_hash: str = Field(min_length=1, max_length=128)
    obs_start: AwareDatetime
    obs_end: AwareDatetime
    state: ProductState = ProductState.COMMITTED
    group_id: int | None = None
    window_id: int | None = None
    parents: tuple[int, ...] = ()
    """Product ids this one was made from (rows of ``product_lineage``)."""
    qa_status: QaStatus | None = None
    """The stage's science verdict (None: the kind has no QA)."""
    validation_status: ValidationStatus | None = None
    """Set by the finalize step (None until then)."""
    qa: dict[str, Any] | None = None
    """QA figures as the stage reported them (JSON)."""


class GroupUpdate(Record):
    """A group transition applied in a completion transaction."""

    group_id: int
    state: GroupState
    stage: str | None = None
    reason: str | None = None


class CompletionResult(Record):
    """What a successful completion committed."""

    job_id: int
    next_jobs: tuple[EnqueueResult, ...]
    product_ids: tuple[int, ...]
    group_updated: bool | None
    """None when no group update was asked for; False when the transition was not allowed."""


class FailureResult(Record):
    """Where a failed attempt left the job."""

    job_id: int
    state: JobState
    """``queued`` (retry at ``available_at``), ``dead`` or ``cancelled``."""
    attempt: int
    available_at: datetime | None
    error_class: ErrorClass


class ReapResult(Record):
    """What one reaper pass did."""

    workers_dead: tuple[str, ...] = ()
    requeued: tuple[int, ...] = ()
    dead: tuple[int, ...] = ()
    cancelled: tuple[int, ...] = ()
    more: bool = False
    """True when the batch limit was hit (call again)."""
    skipped: bool = False
    """True when another reaper held the PostgreSQL advisory lock."""


class CancelResult(Record):
    """Outcome of an operator cancel."""

    job_id: int
    outcome: str
    """``cancelled`` (was queued), ``cancel_requested`` (running: honoured at the next
    heartbeat) or ``already_terminal``."""
    state: JobState


class RetryResult(Record):
    """Outcome of an operator retry: the new row linked to the old one."""

    old_job_id: int
    new_job_id: int
