"""Registry health and statistics (``dsa-stream registry stats``).

Health is ``ok``, ``degraded`` or ``failing``, with the reasons:

* failing: running jobs past their lease by more than a reaper interval (is a
  reaper running?); claimable jobs and no active worker;
* degraded: jobs in the dead letter; running jobs whose heartbeat is older than
  3 heartbeat intervals; groups still collecting past the completeness timeout;
  input files on disk that were rejected (``registry files --state rejected``).

Stage durations (p50/p95) come from the audit trail: the ``claimed`` event and
the ``succeeded`` event of the same job and lease token.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, and_, func, select

from dsa_stream.config import GroupingConfig, WorkerConfig
from dsa_stream.registry.models import groups, input_files, job_events, jobs, workers
from dsa_stream.registry.queries import count_dead_letter, count_open_rejections
from dsa_stream.registry.records import Record
from dsa_stream.registry.states import GroupState, JobEvent, JobState, WorkerState

#: How many recent successful attempts the duration percentiles look at.
DURATION_SAMPLE = 2000


class StageDuration(Record):
    """Duration percentiles of one job kind (successful attempts, claim to success)."""

    kind: str
    n: int
    p50_s: float
    p95_s: float


class RunningJob(Record):
    """A running job with its progress and heartbeat age."""

    id: int
    kind: str
    group_key: str | None
    worker_id: str | None
    attempt: int
    progress: float | None
    heartbeat_age_s: float | None
    lease_expires_in_s: float | None


class Health(Record):
    """Overall state with the reasons."""

    status: Literal["ok", "degraded", "failing"]
    reasons: tuple[str, ...]


class RegistryStats(Record):
    """Counts, durations, running jobs and health at ``now``."""

    now: datetime
    jobs_by_state: dict[str, int]
    jobs_by_kind: dict[str, dict[str, int]]
    groups_by_state: dict[str, int]
    files_by_state: dict[str, int]
    workers_by_state: dict[str, int]
    dead_letter: int
    files_rejected: int = 0
    """Files on disk recorded as not valid subband files (open rejections)."""
    durations: tuple[StageDuration, ...]
    running: tuple[RunningJob, ...]
    health: Health


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (``q`` in 0..100) of a non-empty list."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of an empty list")
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _counts(conn: Connection, column: ColumnElement[Any]) -> dict[str, int]:
    rows = conn.execute(select(column, func.count()).group_by(column)).all()
    return {str(state): int(n) for state, n in rows}


def stage_durations(conn: Connection, sample: int = DURATION_SAMPLE) -> tuple[StageDuration, ...]:
    """p50/p95 claim-to-success duration per kind over the latest ``sample`` successes."""
    done = job_events.alias("done")
    claimed = job_events.alias("claimed")
    query = (
        select(jobs.c.kind, claimed.c.at.label("started"), done.c.at.label("ended"))
        .select_from(
            done.join(
                claimed,
                and_(
                    claimed.c.job_id == done.c.job_id,
                    claimed.c.lease_token == done.c.lease_token,
                    claimed.c.event == str(JobEvent.CLAIMED),
                ),
            ).join(jobs, jobs.c.id == done.c.job_id)
        )
        .where(done.c.event == str(JobEvent.SUCCEEDED))
        .order_by(done.c.id.desc())
        .limit(sample)
    )
    per_kind: dict[str, list[float]] = defaultdict(list)
    for kind, started, ended in conn.execute(query):
        per_kind[kind].append(max((ended - started).total_seconds(), 0.0))
    return tuple(
        StageDuration(
            kind=kind,
            n=len(vals),
            p50_s=round(percentile(vals, 50), 3),
            p95_s=round(percentile(vals, 95), 3),
        )
        for kind, vals in sorted(per_kind.items())
    )


def running_jobs(conn: Connection, now: datetime) -> tuple[RunningJob, ...]:
    """Running jobs with progress, heartbeat age and time left on the lease."""
    query = (
        select(
            jobs.c.id,
            jobs.c.kind,
            groups.c.group_key,
            jobs.c.lease_owner,
            jobs.c.attempt,
            jobs.c.progress,
            jobs.c.heartbeat_at,
            jobs.c.lease_expires_at,
        )
        .select_from(jobs.outerjoin(groups, groups.c.id == jobs.c.group_id))
        .where(jobs.c.state == str(JobState.RUNNING))
        .order_by(jobs.c.priority.desc(), jobs.c.order_key, jobs.c.id)
    )
    out = []
    for r in conn.execute(query):
        hb = r.heartbeat_at
        exp = r.lease_expires_at
        out.append(
            RunningJob(
                id=r.id,
                kind=r.kind,
                group_key=r.group_key,
                worker_id=r.lease_owner,
                attempt=r.attempt,
                progress=r.progress,
                heartbeat_age_s=round((now - hb).total_seconds(), 1) if hb else None,
                lease_expires_in_s=round((exp - now).total_seconds(), 1) if exp else None,
            )
        )
    return tuple(out)


def _health(
    conn: Connection,
    now: datetime,
    running: tuple[RunningJob, ...],
    n_dead_letter: int,
    worker: WorkerConfig,
    grouping: GroupingConfig,
    n_rejected: int = 0,
) -> Health:
    failing: list[str] = []
    degraded: list[str] = []
    overdue = [j for j in running if (j.lease_expires_in_s or 0) < -worker.reap_interval_s]
    if overdue:
        failing.append(f"{len(overdue)} running job(s) past their lease: is a reaper running?")
    claimable = conn.execute(
        select(func.count()).where(jobs.c.state == str(JobState.QUEUED), jobs.c.available_at <= now)
    ).scalar_one()
    active = conn.execute(
        select(func.count()).where(workers.c.state == str(WorkerState.ACTIVE))
    ).scalar_one()
    if claimable and not active:
        failing.append(f"{claimable} claimable job(s) and no active worker")
    if n_dead_letter:
        degraded.append(f"{n_dead_letter} job(s) in the dead letter")
    stale_s = 3 * worker.heartbeat_interval_s
    stale = [j for j in running if j.heartbeat_age_s is not None and j.heartbeat_age_s > stale_s]
    if stale:
        degraded.append(f"{len(stale)} running job(s) with heartbeat older than {stale_s:.0f} s")
    cutoff = now - timedelta(seconds=grouping.complete_timeout_s + worker.reap_interval_s)
    stuck = conn.execute(
        select(func.count()).where(
            groups.c.state == str(GroupState.COLLECTING), groups.c.first_seen_at < cutoff
        )
    ).scalar_one()
    if stuck:
        degraded.append(f"{stuck} group(s) stuck collecting past the completeness timeout")
    if n_rejected:
        degraded.append(
            f"{n_rejected} input file(s) rejected "
            "(see `dsa-stream registry files --state rejected`)"
        )
    if failing:
        return Health(status="failing", reasons=tuple(failing + degraded))
    if degraded:
        return Health(status="degraded", reasons=tuple(degraded))
    return Health(status="ok", reasons=())


def registry_stats(
    conn: Connection,
    *,
    now: datetime,
    worker: WorkerConfig | None = None,
    grouping: GroupingConfig | None = None,
    sample: int = DURATION_SAMPLE,
) -> RegistryStats:
    """Everything ``dsa-stream registry stats`` shows."""
    worker = worker or WorkerConfig()
    grouping = grouping or GroupingConfig()
    by_kind: dict[str, dict[str, int]] = defaultdict(dict)
    for kind, state, n in conn.execute(
        select(jobs.c.kind, jobs.c.state, func.count()).group_by(jobs.c.kind, jobs.c.state)
    ):
        by_kind[kind][state] = int(n)
    running = running_jobs(conn, now)
    n_dead = count_dead_letter(conn)
    n_rejected = count_open_rejections(conn)
    return RegistryStats(
        now=now,
        jobs_by_state=_counts(conn, jobs.c.state),
        jobs_by_kind=dict(by_kind),
        groups_by_state=_counts(conn, groups.c.state),
        files_by_state=_counts(conn, input_files.c.state),
        workers_by_state=_counts(conn, workers.c.state),
        dead_letter=n_dead,
        files_rejected=n_rejected,
        durations=stage_durations(conn, sample),
        running=running,
        health=_health(conn, now, running, n_dead, worker, grouping, n_rejected),
    )
