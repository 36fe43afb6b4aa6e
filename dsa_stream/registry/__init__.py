"""The registry: SQLAlchemy models, Alembic migrations, the job store and queries.

Public entry points:

* :func:`upgrade_registry` / :func:`upgrade` - run the migrations (daemon start, ``init``);
* :func:`make_engine` - engines with the SQLite/PostgreSQL settings of reliability §2;
* :class:`JobStore` - enqueue, claim under a lease, heartbeat, complete, fail, reap,
  cancel, retry, worker registration;
* :class:`LeaseKeeper` - the heartbeat thread of one claim;
* :func:`register_file` / :func:`expire_incomplete_groups` - group assembly;
* :mod:`dsa_stream.registry.queries` / :mod:`dsa_stream.registry.stats` - reads.

Stage packages never import this package; the pipeline layer does.
"""

from __future__ import annotations

from dsa_stream.registry.db import make_engine
from dsa_stream.registry.files import (
    FileFacts,
    GroupExpiry,
    RegisterOutcome,
    RegisterResult,
    expire_incomplete_groups,
    mark_file_missing,
    mark_group_files_consumed,
    quarantine_file,
    register_file,
)
from dsa_stream.registry.jobstore import JobStore
from dsa_stream.registry.lease import LeaseKeeper
from dsa_stream.registry.migrate import (
    current_revision,
    head_revision,
    require_current_schema,
    schema_status,
    upgrade,
    upgrade_registry,
)
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
    FileState,
    GroupState,
    JobKind,
    JobState,
    StopMode,
    WorkerState,
)
from dsa_stream.registry.txn import ProductConflictError, Txn
from dsa_stream.registry.workers import WorkerIdentity, WorkerNotActiveError, WorkerStart

__all__ = [
    "CancelResult",
    "Claim",
    "CompletionResult",
    "EnqueueResult",
    "ErrorClass",
    "FailureResult",
    "FileFacts",
    "FileState",
    "GroupExpiry",
    "GroupState",
    "GroupUpdate",
    "HeartbeatResult",
    "JobKind",
    "JobSpec",
    "JobState",
    "JobStore",
    "LeaseKeeper",
    "ProductConflictError",
    "ProductSpec",
    "ReapResult",
    "RegisterOutcome",
    "RegisterResult",
    "RetryResult",
    "StopMode",
    "Txn",
    "WorkerIdentity",
    "WorkerNotActiveError",
    "WorkerStart",
    "WorkerState",
    "current_revision",
    "expire_incomplete_groups",
    "head_revision",
    "make_engine",
    "mark_file_missing",
    "mark_group_files_consumed",
    "quarantine_file",
    "register_file",
    "require_current_schema",
    "schema_status",
    "upgrade",
    "upgrade_registry",
]
