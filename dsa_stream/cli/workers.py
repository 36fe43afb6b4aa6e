"""``dsa-stream workers list|drain|kill``: see and stop workers (any host, via the registry).

``drain`` lets the worker finish its running stage and stop; ``kill`` aborts the
stage (the job is requeued) and, on this host after confirming the process is the
registered worker, sends SIGTERM then SIGKILL after ``--grace`` seconds. Worker ids
may be abbreviated to the 8 characters ``list`` shows.
"""

from __future__ import annotations

from typing import Any

import click

from dsa_stream.cli.context import emit, emit_table, get_ctx, json_option
from dsa_stream.cli.registry import read_connection
from dsa_stream.daemon.control import current_job_kinds, drain_worker, find_worker, kill_worker
from dsa_stream.registry import JobStore, queries
from dsa_stream.registry.db import db_now
from dsa_stream.registry.migrate import require_current_schema
from dsa_stream.registry.states import LIVE_WORKER_STATES


@click.group("workers")
def workers_group() -> None:
    """Workers: list them, drain one (finish and stop) or kill one."""


@workers_group.command("list")
@click.option("--live", is_flag=True, help="Only active and draining workers.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@json_option
def list_cmd(live: bool, limit: int) -> None:
    """Workers, newest first: id, host, pid, version, state, heartbeat age, current job."""
    with read_connection() as conn:
        rows = queries.list_workers(conn, now=db_now(conn), limit=limit if not live else 10_000)
        if live:
            rows = [r for r in rows if r.state in {str(s) for s in LIVE_WORKER_STATES}][:limit]
        kinds = current_job_kinds(conn, [r.current_job_id for r in rows if r.current_job_id])
    data = [
        {
            **r.model_dump(mode="json"),
            "current_job_kind": kinds.get(r.current_job_id) if r.current_job_id else None,
        }
        for r in rows
    ]

    def render(_d: Any) -> None:
        emit_table(
            "workers",
            ("id", "host", "pid", "version", "state", "heartbeat age", "job", "started", "reason"),
            (
                (
                    r.id[:8],
                    r.host,
                    r.pid,
                    r.code_version,
                    r.state + (f" ({r.stop_requested} requested)" if r.stop_requested else ""),
                    f"{r.heartbeat_age_s:.0f} s",
                    f"{r.current_job_id} {kinds.get(r.current_job_id, '')}"
                    if r.current_job_id
                    else "",
                    r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                    r.reason or "",
                )
                for r in rows
            ),
        )

    emit(data, render)


def _store() -> JobStore:
    store = JobStore.from_settings(get_ctx().settings())
    require_current_schema(store.engine)
    return store


@workers_group.command("drain")
@click.argument("worker_id")
@json_option
def drain_cmd(worker_id: str) -> None:
    """Let WORKER_ID finish its running stage, claim nothing more, and stop."""
    store = _store()
    try:
        with store.engine.connect() as conn:
            target = find_worker(conn, worker_id)
        ok = drain_worker(store, target)
    finally:
        store.close()
    data = {"worker_id": target.id, "host": target.host, "pid": target.pid, "requested": ok}
    if ok:
        msg = f"worker {target.id[:8]} ({target.host} pid {target.pid}): drain requested"
    else:
        msg = f"worker {target.id[:8]} is {target.state}: nothing to drain"
    emit(data, lambda _d: click.echo(msg))


@workers_group.command("kill")
@click.argument("worker_id")
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL (this host only).",
)
@json_option
def kill_cmd(worker_id: str, grace: float) -> None:
    """Abort WORKER_ID's stage (job requeued); on this host also SIGTERM, then SIGKILL."""
    store = _store()
    try:
        with store.engine.connect() as conn:
            target = find_worker(conn, worker_id)
        result = kill_worker(store, target, grace_s=grace)
    finally:
        store.close()

    def render(d: dict[str, Any]) -> None:
        click.echo(f"worker {d['worker_id'][:8]} ({d['host']} pid {d['pid']}):")
        if d["signals"]:
            click.echo(f"  sent {', '.join(d['signals'])}; exited: {d['exited']}")
        if d["requeued_jobs"]:
            click.echo(f"  requeued jobs: {', '.join(map(str, d['requeued_jobs']))}")
        if d["note"]:
            click.echo(f"  {d['note']}")

    emit(result.model_dump(mode="json"), render)
