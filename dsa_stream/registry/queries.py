"""Read-only queries of the registry (CLI ``dsa-stream registry ...``, dashboards, daemon).

Every function takes an open connection (a read-only engine is enough) and
returns frozen row models. Time filters ``since``/``until`` are observation times
(the data's), never bookkeeping times: groups and files by ``obs_time``, jobs by
``order_key``, products by ``obs_start``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, exists, func, select

from dsa_stream.registry.models import (
    calibrations,
    groups,
    input_files,
    job_events,
    jobs,
    products,
    rejected_files,
    workers,
)
from dsa_stream.registry.records import Record
from dsa_stream.registry.states import CalibrationStatus, JobState

DEFAULT_LIMIT = 200


class GroupRow(Record):
    """One observation group."""

    id: int
    group_key: str
    obs_time: datetime
    dec_deg: float | None
    state: str
    stage: str | None
    n_present: int
    n_expected: int
    missing_subbands: list[int] | None
    reason: str | None
    first_seen_at: datetime
    updated_at: datetime


class FileRow(Record):
    """One input file."""

    id: int
    group_key: str
    subband: int
    root_id: str
    rel_path: str
    obs_time: datetime
    size: int
    checksum: str | None
    state: str
    reason: str | None
    registered_at: datetime


class RejectedFileRow(Record):
    """A file that never became a valid subband file (``rejected_files``)."""

    id: int
    root_id: str
    rel_path: str
    size: int
    mtime_ns: int
    checksum: str | None
    reason: str
    retryable: bool
    attempts: int
    state: str
    resolution: str | None
    resolved_file_id: int | None
    first_seen_at: datetime
    rejected_at: datetime
    resolved_at: datetime | None


class JobRow(Record):
    """One job."""

    id: int
    kind: str
    state: str
    group_key: str | None
    dedupe_key: str
    priority: int
    order_key: datetime
    available_at: datetime
    attempt: int
    max_attempts: int
    lease_owner: str | None
    lease_token: int
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    progress: float | None
    cancel_requested: bool
    error_class: str | None
    last_error: str | None
    requeue_of: int | None
    created_at: datetime
    finished_at: datetime | None


class WorkerRow(Record):
    """One worker with the age of its heartbeat."""

    id: str
    host: str
    pid: int
    state: str
    code_version: str
    config_hash: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    stop_requested: str | None
    current_job_id: int | None
    reason: str | None


class ProductRow(Record):
    """One product."""

    id: int
    kind: str
    logical_key: str
    version: int
    state: str
    group_key: str | None
    job_id: int
    root_id: str
    rel_path: str
    manifest_hash: str
    obs_start: datetime
    obs_end: datetime
    published_at: datetime | None
    created_at: datetime


class EventRow(Record):
    """One audit event of a job."""

    id: int
    job_id: int
    at: datetime
    event: str
    from_state: str | None
    to_state: str
    worker_id: str | None
    lease_token: int | None
    attempt: int | None
    detail: str | None


class CalibrationRow(Record):
    """One calibration solution with its validity window (observation time)."""

    id: int
    product_id: int
    valid_from_obs: datetime
    valid_to_obs: datetime
    dec_deg: float | None
    calibrator: str | None
    status: str


def _window(
    query: Select[Any], column: Any, since: datetime | None, until: datetime | None
) -> Select[Any]:
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


def list_groups(
    conn: Connection,
    *,
    state: str | None = None,
    group_key: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[GroupRow]:
    """Groups, newest observation first."""
    cols = [groups.c[name] for name in GroupRow.model_fields]
    query = select(*cols).order_by(groups.c.obs_time.desc()).limit(limit)
    if state:
        query = query.where(groups.c.state == state)
    if group_key:
        query = query.where(groups.c.group_key == group_key)
    query = _window(query, groups.c.obs_time, since, until)
    return [GroupRow.model_validate(dict(r._mapping)) for r in conn.execute(query)]


def list_files(
    conn: Connection,
    *,
    state: str | None = None,
    group_key: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[FileRow]:
    """Input files, newest observation first, then by subband."""
    cols = [input_files.c[n] for n in FileRow.model_fields if n != "group_key"]
    query = (
        select(groups.c.group_key, *cols)
        .join(groups, groups.c.id == input_files.c.group_id)
        .order_by(input_files.c.obs_time.desc(), input_files.c.subband, input_files.c.id)
        .limit(limit)
    )
    if state:
        query = query.where(input_files.c.state == state)
    if group_key:
        query = query.where(groups.c.group_key == group_key)
    query = _window(query, input_files.c.obs_time, since, until)
    return [FileRow.model_validate(dict(r._mapping)) for r in conn.execute(query)]


def list_rejected_files(
    conn: Connection,
    *,
    state: str | None = "rejected",
    root_id: str | None = None,
    rel_path: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[RejectedFileRow]:
    """Rejected file versions, most recently rejected first.

    ``state`` defaults to the open rejections (files on disk that are not valid);
    None lists every version, including resolved, superseded and removed ones.
    Rejected files have no observation time, so there is no ``since``/``until``.
    """
    cols = [rejected_files.c[n] for n in RejectedFileRow.model_fields]
    query = (
        select(*cols)
        .order_by(rejected_files.c.rejected_at.desc(), rejected_files.c.id.desc())
        .limit(limit)
    )
    if state:
        query = query.where(rejected_files.c.state == state)
    if root_id:
        query = query.where(rejected_files.c.root_id == root_id)
    if rel_path:
        query = query.where(rejected_files.c.rel_path == rel_path)
    return [RejectedFileRow.model_validate(dict(r._mapping)) for r in conn.execute(query)]


def count_open_rejections(conn: Connection) -> int:
    """Number of files on disk recorded as not valid (open rejections)."""
    query = select(func.count()).where(rejected_files.c.state == "rejected")
    return int(conn.execute(query).scalar_one())


def _jobs_query(where: list[ColumnElement[bool]], limit: int) -> Select[Any]:
    cols = [jobs.c[n] for n in JobRow.model_fields if n != "group_key"]
    return (
        select(groups.c.group_key, *cols)
        .select_from(jobs.outerjoin(groups, groups.c.id == jobs.c.group_id))
        .where(*where)
        .order_by(jobs.c.id.desc())
        .limit(limit)
    )


def list_jobs(
    conn: Connection,
    *,
    state: str | None = None,
    kind: str | None = None,
    group_key: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[JobRow]:
    """Jobs, newest first; ``since``/``until`` filter the observation time (order key)."""
    where: list[ColumnElement[bool]] = []
    if state:
        where.append(jobs.c.state == state)
    if kind:
        where.append(jobs.c.kind == kind)
    if group_key:
        where.append(groups.c.group_key == group_key)
    query = _window(_jobs_query(where, limit), jobs.c.order_key, since, until)
    return [JobRow.model_validate(dict(r._mapping)) for r in conn.execute(query)]


def get_job(conn: Connection, job_id: int) -> JobRow | None:
    """One job by id."""
    row = conn.execute(_jobs_query([jobs.c.id == job_id], 1)).first()
    return JobRow.model_validate(dict(row._mapping)) if row is not None else None


def dead_letter(conn: Connection, *, limit: int = DEFAULT_LIMIT) -> list[JobRow]:
    """Dead jobs that no operator retry has replaced yet (the dead-letter queue)."""
    later = jobs.alias("later")
    not_retried = ~exists().where(later.c.requeue_of == jobs.c.id)
    query = _jobs_query([jobs.c.state == str(JobState.DEAD), not_retried], limit)
    return [JobRow.model_validate(dict(r._mapping)) for r in conn.execute(query)]


def count_dead_letter(conn: Connection) -> int:
    """Number of jobs in the dead letter (see :func:`dead_letter`)."""
    later = jobs.alias("later")
    query = select(func.count()).where(
        jobs.c.state == str(JobState.DEAD), ~exists().where(later.c.requeue_of == jobs.c.id)
    )
    return int(conn.execute(query).scalar_one())


def job_history(conn: Connection, job_id: int) -> list[EventRow]:
    """The audit events of one job, oldest first."""
    cols = [job_events.c[n] for n in EventRow.model_fields]
    query = select(*cols).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
    return [EventRow.model_validate(dict(r._mapping)) for r in conn.execute(query)]


def list_workers(
    conn: Connection, *, now: datetime, state: str | None = None, limit: int = DEFAULT_LIMIT
) -> list[WorkerRow]:
    """Workers, most recently started first, with their heartbeat age at ``now``."""
    cols = [workers.c[n] for n in WorkerRow.model_fields if n != "heartbeat_age_s"]
    query = select(*cols).order_by(workers.c.started_at.desc()).limit(limit)
    if state:
        query = query.where(workers.c.state == state)
    out = []
    for r in conn.execute(query):
        data = dict(r._mapping)
        data["heartbeat_age_s"] = round(max((now - data["heartbeat_at"]).total_seconds(), 0.0), 1)
        out.append(WorkerRow.model_validate(data))
    return out


def list_products(
    conn: Connection,
    *,
    kind: str | None = None,
    state: str | None = None,
    group_key: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[ProductRow]:
    """Products, newest observation first."""
    cols = [products.c[n] for n in ProductRow.model_fields if n != "group_key"]
    query = (
        select(groups.c.group_key, *cols)
        .select_from(products.outerjoin(groups, groups.c.id == products.c.group_id))
        .order_by(products.c.obs_start.desc(), products.c.id.desc())
        .limit(limit)
    )
    if kind:
        query = query.where(products.c.kind == kind)
    if state:
        query = query.where(products.c.state == state)
    if group_key:
        query = query.where(groups.c.group_key == group_key)
    query = _window(query, products.c.obs_start, since, until)
    return [ProductRow.model_validate(dict(r._mapping)) for r in conn.execute(query)]


def calibrations_covering(
    conn: Connection,
    obs_time: datetime,
    *,
    dec_deg: float | None = None,
    dec_tolerance_deg: float = 1.0,
    status: CalibrationStatus = CalibrationStatus.VALID,
) -> list[CalibrationRow]:
    """Calibrations whose validity window contains ``obs_time``, latest window start first.

    The window is in observation time, never the wall clock; ``dec_deg`` restricts
    the solutions to a Dec tolerance.
    """
    cols = [calibrations.c[n] for n in CalibrationRow.model_fields]
    query = (
        select(*cols)
        .where(
            calibrations.c.status == str(status),
            calibrations.c.valid_from_obs <= obs_time,
            calibrations.c.valid_to_obs >= obs_time,
        )
        .order_by(calibrations.c.valid_from_obs.desc(), calibrations.c.id.desc())
    )
    if dec_deg is not None:
        query = query.where(
            calibrations.c.dec_deg.between(dec_deg - dec_tolerance_deg, dec_deg + dec_tolerance_deg)
        )
    return [CalibrationRow.model_validate(dict(r._mapping)) for r in conn.execute(query)]
