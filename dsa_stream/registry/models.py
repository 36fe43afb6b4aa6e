"""The registry tables (SQLAlchemy 2 declarative models), reliability §7.2.

The schema is created and evolved only by the Alembic migrations in
``dsa_stream/registry/migrations`` (``dsa-stream db upgrade``); these models
describe it for queries, and a test checks that both agree.

Conventions:

* every time column is :class:`~dsa_stream.registry.types.UTCDateTime`;
  observation times (from the data: ``obs_time``, ``obs_start``/``obs_end``,
  ``order_key``, ``valid_from_obs``/``valid_to_obs``) are kept apart from
  bookkeeping times (``*_at``), which come from the store's clock;
* paths are a root id (a name resolved through the site configuration, e.g.
  ``incoming`` or ``products``) plus a path relative to that root, so moving a
  root is one configuration change;
* states are text with CHECK constraints listing the values of
  :mod:`dsa_stream.registry.states`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dsa_stream.registry.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


WORKER_STATES = ("active", "draining", "stopped", "dead")
STOP_MODES = ("drain", "kill")
FILE_STATES = ("registered", "quarantined", "missing", "consumed")
GROUP_STATES = (
    "collecting",
    "complete",
    "incomplete",
    "processing",
    "done",
    "failed",
    "quarantined",
)
JOB_STATES = ("queued", "running", "succeeded", "dead", "cancelled")
PRODUCT_STATES = ("committed", "publishing", "published", "registered", "superseded", "cleaned")
WINDOW_STATES = ("open", "ready", "mosaicking", "done", "stale")
CALIBRATION_STATUSES = ("candidate", "valid", "rejected", "superseded")
REJECTION_STATES = ("rejected", "resolved", "superseded", "removed")


class Base(DeclarativeBase):
    """Declarative base of the registry tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Worker(Base):
    """One worker process: identity, liveness and operator control."""

    __tablename__ = "workers"
    __table_args__ = (
        CheckConstraint(_in("state", WORKER_STATES), name="state"),
        CheckConstraint(
            "stop_requested IS NULL OR " + _in("stop_requested", STOP_MODES), name="stop_requested"
        ),
        Index(None, "state"),
        Index(None, "host"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    boot_id: Mapped[str] = mapped_column(String(64))
    proc_start: Mapped[str] = mapped_column(String(32))
    code_version: Mapped[str] = mapped_column(String(64))
    config_hash: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    stop_requested: Mapped[str | None] = mapped_column(String(8))
    current_job_id: Mapped[int | None] = mapped_column(Integer)
    stopped_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)


class Group(Base):
    """One observation: the 16 subband files sharing a group key."""

    __tablename__ = "groups"
    __table_args__ = (
        CheckConstraint(_in("state", GROUP_STATES), name="state"),
        Index(None, "state", "obs_time"),
        Index(None, "obs_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_key: Mapped[str] = mapped_column(String(64), unique=True)
    obs_time: Mapped[datetime]
    dec_deg: Mapped[float | None] = mapped_column(Float)
    n_present: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_expected: Mapped[int] = mapped_column(Integer, server_default=text("16"))
    state: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    missing_subbands: Mapped[list[int] | None] = mapped_column(JSON)
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class InputFile(Base):
    """One input (UVH5 subband) file, registered once it settled and validated."""

    __tablename__ = "input_files"
    __table_args__ = (
        CheckConstraint(_in("state", FILE_STATES), name="state"),
        UniqueConstraint("root_id", "rel_path"),
        Index(
            "uq_input_files_group_subband_valid",
            "group_id",
            "subband",
            unique=True,
            sqlite_where=text("state IN ('registered', 'consumed')"),
            postgresql_where=text("state IN ('registered', 'consumed')"),
        ),
        Index(None, "group_id"),
        Index(None, "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    root_id: Mapped[str] = mapped_column(String(64))
    rel_path: Mapped[str] = mapped_column(String(1024))
    obs_time: Mapped[datetime]
    subband: Mapped[int] = mapped_column(Integer)
    dec_deg: Mapped[float | None] = mapped_column(Float)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime]
    registered_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RejectedFile(Base):
    """A file in an input root that never became a valid subband file (migration 0002).

    Such a file has no group and no observation time, so it cannot be an
    ``input_files`` row; it is recorded here with the reason instead of being
    skipped. One row per version ``(root_id, rel_path, size, mtime_ns)``; at most
    one open (``rejected``) row per path. A later valid version of the path
    resolves it (``resolved``, with the ``input_files`` row), a later invalid one
    supersedes it, and deleting the file from disk closes it (``removed``).
    """

    __tablename__ = "rejected_files"
    __table_args__ = (
        CheckConstraint(_in("state", REJECTION_STATES), name="state"),
        UniqueConstraint("root_id", "rel_path", "size", "mtime_ns"),
        Index(
            "uq_rejected_files_open_path",
            "root_id",
            "rel_path",
            unique=True,
            sqlite_where=text("state = 'rejected'"),
            postgresql_where=text("state = 'rejected'"),
        ),
        Index(None, "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[str] = mapped_column(String(64))
    rel_path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    retryable: Mapped[bool] = mapped_column(Boolean)
    """The last problem was of the kind that waiting can fix (rejected after the grace)."""
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    state: Mapped[str] = mapped_column(String(16))
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_file_id: Mapped[int | None] = mapped_column(ForeignKey("input_files.id"))
    first_seen_at: Mapped[datetime]
    rejected_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class MosaicWindow(Base):
    """An observation-time bin of 10 consecutive groups, mosaicked together."""

    __tablename__ = "mosaic_windows"
    __table_args__ = (
        CheckConstraint(_in("state", WINDOW_STATES), name="state"),
        Index(None, "obs_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_key: Mapped[str] = mapped_column(String(64), unique=True)
    obs_start: Mapped[datetime]
    obs_end: Mapped[datetime]
    dec_deg: Mapped[float | None] = mapped_column(Float)
    n_members: Mapped[int] = mapped_column(Integer, server_default=text("10"))
    n_members_done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    state: Mapped[str] = mapped_column(String(16))
    built_version: Mapped[int | None] = mapped_column(Integer)
    """Latest version of which a mosaic was built (None: never built)."""
    members: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """Members of ``built_version``: ``[{"group_key", "image_id"}]`` (planner pins)."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Job(Base):
    """One unit of work; claimed under a lease, fenced by ``lease_token``."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("state", JOB_STATES), name="state"),
        CheckConstraint("attempt >= 0 AND attempt <= max_attempts", name="attempts"),
        CheckConstraint("progress IS NULL OR (progress >= 0 AND progress <= 1)", name="progress"),
        Index(
            "uq_jobs_active_dedupe",
            "dedupe_key",
            unique=True,
            sqlite_where=text("state IN ('queued', 'running')"),
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
        Index(
            "uq_jobs_succeeded_dedupe",
            "dedupe_key",
            unique=True,
            sqlite_where=text("state = 'succeeded'"),
            postgresql_where=text("state = 'succeeded'"),
        ),
        Index(
            "ix_jobs_leases",
            "lease_expires_at",
            sqlite_where=text("state = 'running'"),
            postgresql_where=text("state = 'running'"),
        ),
        Index(None, "group_id"),
        Index(None, "state", "kind"),
        Index(None, "requeue_of"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"))
    window_id: Mapped[int | None] = mapped_column(ForeignKey("mosaic_windows.id"))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    order_key: Mapped[datetime]
    available_at: Mapped[datetime]
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("5"))
    lease_owner: Mapped[str | None] = mapped_column(ForeignKey("workers.id"))
    lease_token: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    timeout_s: Mapped[int] = mapped_column(Integer)
    progress: Mapped[float | None] = mapped_column(Float)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=false())
    last_error: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(32))
    requeue_of: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    payload: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


#: Claim order: priority DESC, then observation time, then id (partial: queued rows only).
Index(
    "ix_jobs_claim",
    Job.priority.desc(),
    Job.order_key,
    Job.id,
    sqlite_where=text("state = 'queued'"),
    postgresql_where=text("state = 'queued'"),
)


class JobEventRow(Base):
    """Append-only audit of every job state change (a trigger rejects UPDATEs)."""

    __tablename__ = "job_events"
    __table_args__ = (Index(None, "job_id", "id"), Index(None, "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    worker_id: Mapped[str | None] = mapped_column(String(36))
    lease_token: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class Product(Base):
    """A committed output (MS, caltable, image, mosaic, QA), written under a job's lease."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint(_in("state", PRODUCT_STATES), name="state"),
        UniqueConstraint("kind", "logical_key", "version"),
        Index(None, "group_id"),
        Index(None, "obs_start"),
        Index(None, "job_id"),
        Index(None, "kind", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    logical_key: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    lease_token: Mapped[int] = mapped_column(Integer)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"))
    window_id: Mapped[int | None] = mapped_column(ForeignKey("mosaic_windows.id"))
    root_id: Mapped[str] = mapped_column(String(64))
    rel_path: Mapped[str] = mapped_column(String(1024))
    manifest_hash: Mapped[str] = mapped_column(String(128))
    obs_start: Mapped[datetime]
    obs_end: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    published_root_id: Mapped[str | None] = mapped_column(String(64))
    published_rel_path: Mapped[str | None] = mapped_column(String(1024))
    published_at: Mapped[datetime | None]
    qa_status: Mapped[str | None] = mapped_column(String(16))
    """passed / failed / not_checked: the science verdict of the stage (QaStatus)."""
    validation_status: Mapped[str | None] = mapped_column(String(16))
    """valid / invalid / unchecked: the finalize verdict on the files (ValidationStatus)."""
    qa: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """QA figures (rms, peak, flux ratios ...), as the stage reported them."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ProductLineage(Base):
    """Provenance edge: ``child`` was made from ``parent`` (e.g. image <- ms, mosaic <- image)."""

    __tablename__ = "product_lineage"
    __table_args__ = (
        CheckConstraint("parent_id <> child_id", name="not_self"),
        Index(None, "child_id"),
    )

    parent_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    relation: Mapped[str] = mapped_column(String(32), server_default=text("'input'"))


class Calibration(Base):
    """A calibration solution and its validity window in observation time."""

    __tablename__ = "calibrations"
    __table_args__ = (
        CheckConstraint(_in("status", CALIBRATION_STATUSES), name="status"),
        CheckConstraint("valid_to_obs >= valid_from_obs", name="window"),
        Index(None, "status", "valid_from_obs"),
        Index(None, "product_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    valid_from_obs: Mapped[datetime]
    valid_to_obs: Mapped[datetime]
    dec_deg: Mapped[float | None] = mapped_column(Float)
    calibrator: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    qa: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


workers = cast(Table, Worker.__table__)
groups = cast(Table, Group.__table__)
input_files = cast(Table, InputFile.__table__)
rejected_files = cast(Table, RejectedFile.__table__)
mosaic_windows = cast(Table, MosaicWindow.__table__)
jobs = cast(Table, Job.__table__)
job_events = cast(Table, JobEventRow.__table__)
products = cast(Table, Product.__table__)
product_lineage = cast(Table, ProductLineage.__table__)
calibrations = cast(Table, Calibration.__table__)
