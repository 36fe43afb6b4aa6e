"""``dsa-stream status``: one screen for the operator.

Health (registry plus the daemon running on this host, if any), the daemon's phase
and any pause, the running stage with its progress, the backlog by job kind, the
last products, groups by state and the dead letters. ``--json`` prints the same as
one document. The registry is read only; the daemon is described by its status
file when the process it names is alive on this host.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from sqlalchemy import Connection, func, select

from dsa_stream.cli.context import console, emit, emit_table, get_ctx, json_option
from dsa_stream.cli.registry import read_connection
from dsa_stream.daemon.health import RegistryView, health, read_registry
from dsa_stream.daemon.state import DaemonSnapshot, live_status, status_path
from dsa_stream.registry import queries
from dsa_stream.registry.models import job_events
from dsa_stream.registry.states import JobEvent

#: Rows of the product and dead-letter lists.
SHOWN = 5


def _stage_started(conn: Connection, job_id: int) -> datetime | None:
    return conn.execute(
        select(func.max(job_events.c.at)).where(
            job_events.c.job_id == job_id, job_events.c.event == str(JobEvent.CLAIMED)
        )
    ).scalar_one()


def _running(conn: Connection, view: RegistryView) -> list[dict[str, Any]]:
    out = []
    for job in view.stats.running:
        started = _stage_started(conn, job.id)
        out.append(
            {
                **job.model_dump(mode="json"),
                "elapsed_s": round((view.now - started).total_seconds(), 1) if started else None,
            }
        )
    return out


def _backlog(view: RegistryView) -> dict[str, dict[str, int]]:
    kinds = sorted(set(view.backlog) | set(view.stats.jobs_by_kind))
    out = {}
    for kind in kinds:
        states = view.stats.jobs_by_kind.get(kind, {})
        out[kind] = {
            "claimable": view.backlog.get(kind, {}).get("claimable", 0),
            "delayed": view.backlog.get(kind, {}).get("delayed", 0),
            "running": states.get("running", 0),
            "succeeded": states.get("succeeded", 0),
            "dead": states.get("dead", 0),
            "cancelled": states.get("cancelled", 0),
        }
    return out


def _daemon_doc(snap: DaemonSnapshot | None, why_not: str | None) -> dict[str, Any]:
    if snap is None or why_not is not None:
        return {"running": False, "why": why_not}
    return {"running": True, **snap.model_dump(mode="json")}


def collect() -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-ready document."""
    settings = get_ctx().settings()
    snap, why_not = live_status(status_path(settings))
    live = snap if why_not is None else None
    with read_connection() as conn:
        view = read_registry(conn, settings, live.worker_id if live else None)
        running = _running(conn, view)
        products = queries.list_products(conn, limit=SHOWN)
        dead = queries.dead_letter(conn, limit=SHOWN)
    return {
        "health": health(settings, live, view),
        "daemon": _daemon_doc(snap, why_not),
        "running": running,
        "backlog": _backlog(view),
        "groups_by_state": view.stats.groups_by_state,
        "last_products": [p.model_dump(mode="json") for p in products],
        "dead_letter": {
            "count": view.stats.dead_letter,
            "jobs": [j.model_dump(mode="json") for j in dead],
        },
    }


def _render_header(d: dict[str, Any]) -> None:
    out = console()
    h = d["health"]
    colour = {"ok": "green", "degraded": "yellow", "failing": "red"}[h["status"]]
    out.print(f"health: [bold {colour}]{h['status']}[/]")
    for reason in h["reasons"]:
        out.print(f"  - {reason}")
    dm = d["daemon"]
    if dm["running"]:
        w = dm.get("worker") or {}
        out.print(
            f"daemon: pid {dm['pid']} on {dm['host']} ({dm['mode']}, {dm['phase']}), "
            f"worker {dm['worker_id'][:8]} {w.get('state', '')}, since {dm['started_at'][:19]}"
        )
        if dm.get("paused_reason"):
            out.print(f"  held back: {dm['paused_reason']}")
        if dm.get("http"):
            out.print(f"  http://{dm['http']}/health  /metrics")
    else:
        out.print(f"daemon: not running here ({dm['why']})")


def _render(d: dict[str, Any]) -> None:
    _render_header(d)
    if d["running"]:
        emit_table(
            "running",
            ("job", "kind", "group", "attempt", "progress", "elapsed", "heartbeat age"),
            (
                (
                    r["id"],
                    r["kind"],
                    r["group_key"],
                    r["attempt"],
                    f"{100 * r['progress']:.0f}%" if r["progress"] is not None else "",
                    f"{r['elapsed_s']:.0f} s" if r["elapsed_s"] is not None else "",
                    f"{r['heartbeat_age_s']:.0f} s" if r["heartbeat_age_s"] is not None else "",
                )
                for r in d["running"]
            ),
        )
    columns = ("claimable", "delayed", "running", "succeeded", "dead", "cancelled")
    emit_table(
        "backlog by kind",
        ("kind", *columns),
        ((k, *(v[c] for c in columns)) for k, v in d["backlog"].items()),
    )
    groups = ", ".join(f"{k} {v}" for k, v in sorted(d["groups_by_state"].items()))
    click.echo(f"groups: {groups or 'none'}")
    if d["last_products"]:
        emit_table(
            "last products",
            ("kind", "key", "version", "state", "group", "published"),
            (
                (
                    p["kind"],
                    p["logical_key"],
                    p["version"],
                    p["state"],
                    p["group_key"],
                    (p["published_at"] or "")[:19],
                )
                for p in d["last_products"]
            ),
        )
    dl = d["dead_letter"]
    click.echo(
        f"dead letters: {dl['count']}" + (" (dsa-stream jobs dead-letter)" if dl["count"] else "")
    )
    for j in dl["jobs"]:
        click.echo(
            f"  job {j['id']} {j['kind']} {j['group_key'] or ''}: {(j['last_error'] or '')[:100]}"
        )


@click.command("status")
@json_option
def status_cmd() -> None:
    """One screen: health, daemon, running stage, backlog, last products, dead letters."""
    data = collect()
    emit(data, _render)
