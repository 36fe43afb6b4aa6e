"""Health of a site: the registry's view plus the daemon's own (``/health``, ``status``).

:func:`read_registry` gathers, in one read-only connection, what ``/health``,
``/metrics`` and ``dsa-stream status`` show: the registry statistics of
:mod:`~dsa_stream.registry.stats` (jobs, groups, durations, running jobs, its
health), the backlog split into claimable and delayed jobs, products by kind and
state, and the heartbeat of one worker.

:func:`health` merges it with a :class:`~dsa_stream.daemon.state.DaemonSnapshot`:

* ``failing``: the registry cannot be read; a service thread died; the registry's
  own failing reasons;
* ``degraded``: claiming is paused or held back (disk, memory); the worker's
  heartbeat is older than 3 heartbeat intervals while no stage runs; the daemon is
  stopping; the registry's degraded reasons (dead letters, stuck groups, ...);
* ``ok`` otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, func, select

from dsa_stream.config import Settings
from dsa_stream.daemon.state import DaemonSnapshot
from dsa_stream.registry.db import db_now
from dsa_stream.registry.models import jobs, products, workers
from dsa_stream.registry.records import Record
from dsa_stream.registry.states import JobState
from dsa_stream.registry.stats import RegistryStats, registry_stats

Status = Literal["ok", "degraded", "failing"]


class RegistryView(Record):
    """What the registry says at one moment (module docstring)."""

    now: datetime
    stats: RegistryStats
    backlog: dict[str, dict[str, int]]
    """Job kind -> ``claimable`` (queued, available now) and ``delayed`` (retry backoff)."""
    products: dict[str, dict[str, int]]
    """Product kind -> state -> count."""
    worker_state: str | None = None
    worker_heartbeat_age_s: float | None = None


def _backlog(conn: Connection, now: datetime) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"claimable": 0, "delayed": 0})
    ready = (jobs.c.available_at <= now).label("ready")
    rows = conn.execute(
        select(jobs.c.kind, ready, func.count())
        .where(jobs.c.state == str(JobState.QUEUED))
        .group_by(jobs.c.kind, ready)
    )
    for kind, is_ready, n in rows:
        out[kind]["claimable" if is_ready else "delayed"] += int(n)
    return dict(out)


def _products(conn: Connection) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    rows = conn.execute(
        select(products.c.kind, products.c.state, func.count()).group_by(
            products.c.kind, products.c.state
        )
    )
    for kind, state, n in rows:
        out[kind][state] = int(n)
    return dict(out)


def read_registry(
    conn: Connection, settings: Settings, worker_id: str | None = None
) -> RegistryView:
    """Everything health, metrics and status need from the registry (read only)."""
    now = db_now(conn)
    stats = registry_stats(conn, now=now, worker=settings.worker, grouping=settings.grouping)
    state = age = None
    if worker_id is not None:
        row = conn.execute(
            select(workers.c.state, workers.c.heartbeat_at).where(workers.c.id == worker_id)
        ).first()
        if row is not None:
            state = row.state
            age = round(max((now - row.heartbeat_at).total_seconds(), 0.0), 1)
    return RegistryView(
        now=now,
        stats=stats,
        backlog=_backlog(conn, now),
        products=_products(conn),
        worker_state=state,
        worker_heartbeat_age_s=age,
    )


def _daemon_reasons(
    daemon: DaemonSnapshot, view: RegistryView | None, settings: Settings
) -> tuple[list[str], list[str]]:
    failing: list[str] = []
    degraded: list[str] = []
    if daemon.phase == "running":
        dead = sorted(name for name, alive in daemon.threads.items() if not alive)
        if dead:
            failing.append(f"service thread(s) not running: {', '.join(dead)}")
    elif daemon.phase == "stopping":
        degraded.append(f"stopping ({daemon.stop_reason or 'stop requested'})")
    if daemon.paused_reason:
        degraded.append(f"claiming held back: {daemon.paused_reason}")
    if view is not None and daemon.kinds:
        orphans = sorted(
            k for k, n in view.backlog.items() if n["claimable"] and k not in daemon.kinds
        )
        if orphans:
            degraded.append(f"queued jobs of kinds this daemon does not run: {', '.join(orphans)}")
    running_stage = daemon.worker is not None and daemon.worker.state == "running"
    stale_s = 3 * settings.worker.heartbeat_interval_s
    age = view.worker_heartbeat_age_s if view is not None else None
    if age is not None and age > stale_s and not running_stage:
        degraded.append(f"worker heartbeat is {age:.0f} s old (> {stale_s:.0f} s)")
    return failing, degraded


def health(
    settings: Settings,
    daemon: DaemonSnapshot | None,
    view: RegistryView | None,
    registry_error: str | None = None,
) -> dict[str, Any]:
    """The health document of ``/health`` and ``dsa-stream status`` (module docstring)."""
    failing: list[str] = []
    degraded: list[str] = []
    if registry_error is not None:
        failing.append(f"registry unreachable: {registry_error}")
    if view is not None:
        reg = view.stats.health
        (failing if reg.status == "failing" else degraded).extend(reg.reasons)
    if daemon is not None:
        f, d = _daemon_reasons(daemon, view, settings)
        failing[:0] = f
        degraded[:0] = d
    status: Status = "failing" if failing else "degraded" if degraded else "ok"
    doc: dict[str, Any] = {
        "status": status,
        "reasons": failing + degraded,
        "paused": daemon.paused_reason if daemon is not None else None,
        "last_heartbeat_age_s": view.worker_heartbeat_age_s if view is not None else None,
    }
    if daemon is not None:
        doc["daemon"] = {
            "pid": daemon.pid,
            "host": daemon.host,
            "worker_id": daemon.worker_id,
            "mode": daemon.mode,
            "phase": daemon.phase,
            "started_at": daemon.started_at.isoformat(),
            "worker": daemon.worker.model_dump(mode="json") if daemon.worker else None,
            "threads": daemon.threads,
        }
    if view is not None:
        doc["registry"] = {
            "now": view.now.isoformat(),
            "jobs_by_state": view.stats.jobs_by_state,
            "backlog": view.backlog,
            "dead_letter": view.stats.dead_letter,
        }
    return doc
