"""``dsa-stream logs``: show and follow the per-job stage logs.

Without filters it shows the end of the newest stage log; ``--job ID`` selects every
attempt of one job, ``--group KEY`` every job of an observation group (from the
registry), ``--kind`` one job kind. ``--follow`` then streams new lines live,
including logs of attempts and jobs that start later, until Ctrl-C or SIGTERM.
Lines carry a ``[job-<id>-<kind>-a<attempt>]`` prefix whenever more than one file
can appear.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import click
from sqlalchemy import select

from dsa_stream.cli.context import get_ctx
from dsa_stream.cli.registry import read_connection
from dsa_stream.daemon.joblogs import Follower, JobLog, jobs_dir, list_job_logs, tail
from dsa_stream.daemon.joblogs import follow as follow_logs
from dsa_stream.registry.models import groups, jobs

#: Seconds between registry look-ups of a group's jobs while following.
GROUP_REFRESH_S = 2.0


class _Selection:
    """The ``--job/--group/--kind`` filters; a group's job ids are refreshed from the registry."""

    def __init__(self, job_id: int | None, group_key: str | None, kind: str | None) -> None:
        self.job_id = job_id
        self.group_key = group_key
        self.kind = kind
        self.group_jobs: set[int] = set()
        self._refreshed = 0.0
        self.refresh(force=True)

    @property
    def filtered(self) -> bool:
        return self.job_id is not None or self.group_key is not None or self.kind is not None

    def refresh(self, force: bool = False) -> None:
        if self.group_key is None or (
            not force and time.monotonic() - self._refreshed < GROUP_REFRESH_S
        ):
            return
        with read_connection() as conn:
            rows = conn.execute(
                select(jobs.c.id)
                .join(groups, groups.c.id == jobs.c.group_id)
                .where(groups.c.group_key == self.group_key)
            )
            self.group_jobs = {int(r) for r in rows.scalars()}
        self._refreshed = time.monotonic()

    def __call__(self, log: JobLog) -> bool:
        if self.job_id is not None and log.job_id != self.job_id:
            return False
        if self.group_key is not None and log.job_id not in self.group_jobs:
            return False
        return self.kind is None or log.kind == self.kind


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@click.command("logs")
@click.option("--job", "job_id", type=int, help="Every attempt of this job.")
@click.option("--group", "group_key", help="Every job of this observation group.")
@click.option("--kind", help="Only jobs of this kind (convert, calibrate, image, ...).")
@click.option(
    "-n",
    "--lines",
    type=int,
    default=20,
    show_default=True,
    help="Lines shown from the end of each log first (0: whole files).",
)
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new lines (Ctrl-C stops).")
@click.option(
    "--poll", type=click.FloatRange(0.05), default=0.5, show_default=True, help="Follow period (s)."
)
def logs_cmd(
    job_id: int | None,
    group_key: str | None,
    kind: str | None,
    lines: int,
    follow: bool,
    poll: float,
) -> None:
    """Show (or --follow) the per-job stage logs."""
    directory = jobs_dir(get_ctx().settings().paths.resolve("logs"))
    selection = _Selection(job_id, group_key, kind)
    # The follower is made first: the tails end where it starts (no line lost or repeated).
    follower = Follower(directory, selection, from_end=True) if follow else None
    chosen = [log for log in list_job_logs(directory) if selection(log)]
    if not selection.filtered and chosen:
        chosen = [max(chosen, key=lambda log: (log.path.stat().st_mtime_ns, log.job_id))]
    prefix = follow or len(chosen) > 1
    for log in chosen:
        upto = follower.offset(log.path) if follower is not None else None
        for line in tail(log.path, lines, upto):
            click.echo(f"[{log.label}] {line}" if prefix else line)
    if not chosen and not follow:
        click.echo(f"no job logs match in {directory}", err=True)
    if follower is not None:
        _follow(follower, selection, poll)


def _follow(follower: Follower, selection: _Selection, poll_s: float) -> None:
    stop = threading.Event()
    with _stop_on_signals(stop):
        follow_logs(
            follower,
            lambda log, line: click.echo(f"[{log.label}] {line}"),
            stop,
            poll_s,
            refresh=selection.refresh,
        )
