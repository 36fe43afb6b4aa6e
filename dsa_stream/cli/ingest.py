"""``dsa-stream ingest``: register the subband files of ``paths.incoming``.

``--once`` runs one reconcile scan (every file that can be decided now, then the
incomplete-group timeout pass) and prints a summary. Without it the watcher runs
until SIGINT/SIGTERM: the first signal lets the current file finish, a second
aborts. Both run the registry migrations first. Rejected files are data, not
errors: the exit code is 0 whenever ingestion ran.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from dsa_stream.cli.context import emit, emit_table, get_ctx, json_option
from dsa_stream.exceptions import ShutdownRequested
from dsa_stream.registry.migrate import upgrade_registry
from dsa_stream.watcher.ingest import Ingestor, ingest_once
from dsa_stream.watcher.report import FileNote, IngestReport


def _notes(title: str, notes: tuple[FileNote, ...]) -> None:
    if notes:
        emit_table(
            title,
            ("file", "outcome", "group", "reason"),
            ((n.rel_path, n.outcome, n.group_key, n.reason) for n in notes),
        )


def _render_report(report: IngestReport) -> None:
    counts = {
        "files seen": report.files_seen,
        "registered": report.registered,
        "unchanged": report.unchanged,
        "waiting to settle": len(report.pending_settle),
        "waiting (not valid yet)": len(report.pending_retry),
        "rejected": len(report.rejected),
        "quarantined by the registry": len(report.quarantined),
        "late": len(report.late),
        "missing from disk": len(report.missing),
        "groups completed": len(report.groups_completed),
        "groups timed out": len(report.groups_expired),
        "convert jobs enqueued": len(report.jobs_enqueued),
        "ignored names": report.ignored,
    }
    emit_table(f"ingest {report.directory}", ("", "count"), counts.items())
    _notes("rejected (recorded in the registry)", report.rejected)
    _notes("not valid yet (within the grace period)", report.pending_retry)
    _notes("quarantined by the registry", report.quarantined)
    _notes("late", report.late)
    groups = [*report.groups_completed, *report.groups_expired]
    if groups:
        emit_table(
            "groups",
            ("group", "state", "convert job", "missing subbands"),
            (
                (g.group_key, g.state, g.convert_job_id, ",".join(map(str, g.missing_subbands)))
                for g in groups
            ),
        )


@contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: set ``stop``; a second: abort."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise ShutdownRequested(f"second signal {signal.Signals(signum).name}: aborting")
        click.echo(
            f"{signal.Signals(signum).name}: stopping after the current file (send again to abort)",
            err=True,
        )
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@click.command("ingest")
@click.option("--once", is_flag=True, help="One scan and timeout pass, then exit with a summary.")
@click.option(
    "--incoming",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to watch (overrides paths.incoming).",
)
@click.option(
    "--polling/--no-polling",
    default=None,
    help="Poll the directory instead of inotify (network filesystems).",
)
@json_option
def ingest_cmd(once: bool, incoming: Path | None, polling: bool | None) -> None:
    """Register subband files from the incoming directory (watch, or --once)."""
    ctx = get_ctx()
    ctx.override("paths.incoming", str(incoming.resolve()) if incoming else None)
    ctx.override("watcher.use_polling", polling)
    settings = ctx.settings()
    upgrade_registry(settings)
    if once:
        report = ingest_once(settings)
        emit(report.model_dump(mode="json"), lambda _d: _render_report(report))
        return
    stop = threading.Event()
    with Ingestor(settings) as ingestor, _signals(stop):
        click.echo(f"watching {ingestor.directory} (Ctrl-C to stop)", err=True)
        stats: dict[str, Any] = ingestor.run(stop)

    emit(stats, lambda d: emit_table("ingest counters", ("counter", "value"), d.items()))
