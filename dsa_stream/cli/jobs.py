"""``dsa-stream jobs retry|cancel|show|dead-letter``: operator actions on jobs."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from dsa_stream.cli.context import emit, emit_table, get_ctx, json_option
from dsa_stream.cli.registry import read_connection
from dsa_stream.exceptions import RegistryError
from dsa_stream.registry import queries
from dsa_stream.registry.jobstore import JobStore
from dsa_stream.registry.migrate import require_current_schema


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


@contextmanager
def _store() -> Iterator[JobStore]:
    store = JobStore.from_settings(get_ctx().settings())
    try:
        require_current_schema(store.engine)
        yield store
    finally:
        store.close()


_actor = click.option(
    "--actor", default=_default_actor, show_default="current user", help="Recorded in the audit."
)


@click.group("jobs")
def jobs_group() -> None:
    """Operate on jobs: retry, cancel, show, dead-letter."""


@jobs_group.command("retry")
@click.argument("job_id", type=int)
@click.option("--reason", help="Why (recorded in the audit trail).")
@_actor
@json_option
def retry_cmd(job_id: int, reason: str | None, actor: str) -> None:
    """Requeue a dead or cancelled job as a new job linked to it (the old one stays)."""
    with _store() as store:
        result = store.retry(job_id, actor=actor, reason=reason)
    emit(
        result.model_dump(mode="json"),
        lambda d: click.echo(f"job {d['old_job_id']} retried as job {d['new_job_id']}"),
    )


@jobs_group.command("cancel")
@click.argument("job_id", type=int)
@_actor
@json_option
def cancel_cmd(job_id: int, actor: str) -> None:
    """Cancel a job: queued at once, running at its worker's next heartbeat."""
    with _store() as store:
        result = store.cancel(job_id, actor=actor)
    messages = {
        "cancelled": "job {job_id} cancelled",
        "cancel_requested": "job {job_id} is running: cancel requested (at its next heartbeat)",
        "already_terminal": "job {job_id} is already {state}: nothing to cancel",
    }
    emit(
        result.model_dump(mode="json"),
        lambda d: click.echo(messages[d["outcome"]].format(**d)),
    )


@jobs_group.command("show")
@click.argument("job_id", type=int)
@json_option
def show_cmd(job_id: int) -> None:
    """One job with its audit trail."""
    with read_connection() as conn:
        job = queries.get_job(conn, job_id)
        if job is None:
            raise RegistryError(f"no job with id {job_id}")
        events = queries.job_history(conn, job_id)
    data: dict[str, Any] = {
        "job": job.model_dump(mode="json"),
        "events": [e.model_dump(mode="json") for e in events],
    }

    def render(_d: Any) -> None:
        emit_table(f"job {job_id}", ("field", "value"), job.model_dump().items())
        emit_table(
            "events",
            ("at", "event", "from", "to", "worker", "token", "attempt", "detail"),
            (
                (
                    e.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                    e.event,
                    e.from_state,
                    e.to_state,
                    (e.worker_id or "")[:8],
                    e.lease_token,
                    e.attempt,
                    e.detail,
                )
                for e in events
            ),
        )

    emit(data, render)


@jobs_group.command("dead-letter")
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True)
@json_option
def dead_letter_cmd(limit: int) -> None:
    """Dead jobs not yet retried (the dead-letter queue)."""
    with read_connection() as conn:
        rows = queries.dead_letter(conn, limit=limit)

    def render(_d: Any) -> None:
        emit_table(
            "dead letter",
            ("id", "kind", "group", "attempt", "error class", "error"),
            (
                (
                    r.id,
                    r.kind,
                    r.group_key,
                    f"{r.attempt}/{r.max_attempts}",
                    r.error_class,
                    (r.last_error or "")[:80],
                )
                for r in rows
            ),
        )

    emit([r.model_dump(mode="json") for r in rows], render)
