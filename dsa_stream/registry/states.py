"""States, allowed transitions and stage priorities of the registry (reliability §7.3).

Every state is a ``StrEnum`` whose values are what the database stores. The
CHECK constraints of the initial migration spell the same values out literally
(migrations are frozen history); ``tests/registry/test_schema.py`` proves that
the two agree.
"""

from __future__ import annotations

import random
from enum import StrEnum


class JobState(StrEnum):
    """Lifecycle of one job row; ``succeeded``, ``dead`` and ``cancelled`` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


#: States a job never leaves (a BEFORE UPDATE trigger rejects any change to such rows).
TERMINAL_JOB_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED}
)

#: Allowed job transitions (from -> to). Operator retry is not a transition: it inserts
#: a new row with ``requeue_of`` pointing at the terminal one.
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {
            JobState.RUNNING,  # heartbeat, cancel request
            JobState.SUCCEEDED,
            JobState.QUEUED,  # transient failure, lease expiry
            JobState.DEAD,
            JobState.CANCELLED,
        }
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.DEAD: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class JobKind(StrEnum):
    """What a job does. New kinds need no migration (the column is free text)."""

    CONVERT = "convert"
    CALIBRATE = "calibrate"
    IMAGE = "image"
    MOSAIC = "mosaic"
    REGISTER = "register"
    FINALIZE = "finalize"
    PUBLISH = "publish"
    CLEANUP = "cleanup"
    RECONCILE = "reconcile"


#: Claim priority (higher first): later stages drain in-flight groups before new
#: groups start, so latency stays bounded (reliability §7.5 "claim order").
KIND_PRIORITY: dict[JobKind, int] = {
    JobKind.PUBLISH: 90,
    JobKind.FINALIZE: 80,
    JobKind.REGISTER: 70,
    JobKind.MOSAIC: 60,
    JobKind.IMAGE: 50,
    JobKind.CALIBRATE: 40,
    JobKind.CONVERT: 30,
    JobKind.CLEANUP: 20,
    JobKind.RECONCILE: 10,
}


class ErrorClass(StrEnum):
    """Why an attempt ended without success (``jobs.error_class``)."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    LEASE_EXPIRED = "lease_expired"
    WORKER_DEAD = "worker_dead"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    CANCELLED = "cancelled"


class JobEvent(StrEnum):
    """What a ``job_events`` row records."""

    ENQUEUED = "enqueued"
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REAPED = "reaped"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    RETRIED = "retried"


class GroupState(StrEnum):
    """Lifecycle of an observation group (16 subband files)."""

    COLLECTING = "collecting"
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"


#: Allowed group transitions (from -> to); staying in the same state is always allowed
#: (e.g. ``processing`` with a new ``stage``).
GROUP_TRANSITIONS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.COLLECTING: frozenset(
        {GroupState.COMPLETE, GroupState.INCOMPLETE, GroupState.QUARANTINED, GroupState.FAILED}
    ),
    GroupState.COMPLETE: frozenset(
        {GroupState.PROCESSING, GroupState.DONE, GroupState.FAILED, GroupState.QUARANTINED}
    ),
    GroupState.INCOMPLETE: frozenset(
        {GroupState.PROCESSING, GroupState.DONE, GroupState.FAILED, GroupState.QUARANTINED}
    ),
    GroupState.PROCESSING: frozenset({GroupState.DONE, GroupState.FAILED, GroupState.QUARANTINED}),
    GroupState.DONE: frozenset({GroupState.PROCESSING, GroupState.QUARANTINED}),
    GroupState.FAILED: frozenset({GroupState.PROCESSING, GroupState.QUARANTINED}),
    GroupState.QUARANTINED: frozenset(),
}


def group_predecessors(target: GroupState) -> frozenset[GroupState]:
    """States from which ``target`` may be entered (including ``target`` itself)."""
    return frozenset(s for s, nxt in GROUP_TRANSITIONS.items() if target in nxt) | {target}


class FileState(StrEnum):
    """State of one input (UVH5) file."""

    REGISTERED = "registered"
    QUARANTINED = "quarantined"
    MISSING = "missing"
    CONSUMED = "consumed"


#: File states that count towards a group's subbands (and are unique per subband).
VALID_FILE_STATES: frozenset[FileState] = frozenset({FileState.REGISTERED, FileState.CONSUMED})


class WorkerState(StrEnum):
    """Liveness of a worker process."""

    ACTIVE = "active"
    DRAINING = "draining"
    STOPPED = "stopped"
    DEAD = "dead"


#: Worker states that still heartbeat (and may hold leases).
LIVE_WORKER_STATES: frozenset[WorkerState] = frozenset({WorkerState.ACTIVE, WorkerState.DRAINING})


class StopMode(StrEnum):
    """Operator request to a worker (``workers.stop_requested``)."""

    DRAIN = "drain"  # finish the current job, claim no more, exit
    KILL = "kill"  # abandon the current job at the next heartbeat, exit


class ProductState(StrEnum):
    """Lifecycle of a product row (reliability §4.3)."""

    COMMITTED = "committed"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    REGISTERED = "registered"
    SUPERSEDED = "superseded"
    CLEANED = "cleaned"


class QaStatus(StrEnum):
    """The science verdict on a product, from the stage that made it."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_CHECKED = "not_checked"


class ValidationStatus(StrEnum):
    """The finalize verdict on a product's files (exist, open, match their manifest)."""

    VALID = "valid"
    INVALID = "invalid"
    UNCHECKED = "unchecked"


class ProductKind(StrEnum):
    """Kinds of products (free text in the database)."""

    MS = "ms"
    CALTABLE = "caltable"
    IMAGE = "image"
    MOSAIC = "mosaic"
    QA = "qa"


class WindowState(StrEnum):
    """Lifecycle of a mosaic window (10 consecutive groups in observation time)."""

    OPEN = "open"
    READY = "ready"
    MOSAICKING = "mosaicking"
    DONE = "done"
    STALE = "stale"


class CalibrationStatus(StrEnum):
    """Whether a calibration solution may be applied."""

    CANDIDATE = "candidate"
    VALID = "valid"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


def priority_of(kind: str) -> int:
    """Claim priority of a job kind (unknown kinds get 0, after every known kind)."""
    try:
        return KIND_PRIORITY[JobKind(kind)]
    except ValueError:
        return 0


def backoff_delay_s(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    jitter: float,
    rng: random.Random | None = None,
) -> float:
    """Retry delay after failed attempt number ``attempt`` (1-based).

    ``min(base * 2**(attempt - 1), max) * U(1 - jitter, 1 + jitter)``, as in
    Oban, River and Absurd (reliability §7.5).
    """
    exponent = max(attempt - 1, 0)
    raw = max_s if exponent >= 64 else min(base_s * (2.0**exponent), max_s)
    factor = (rng or random).uniform(1.0 - jitter, 1.0 + jitter)
    return raw * factor
