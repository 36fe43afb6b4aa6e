"""What a running daemon is doing, and the status file that publishes it on this host.

The daemon keeps a :class:`DaemonSnapshot` (phase, worker, guards, ingest counters,
threads) for ``/health`` and ``/metrics``, and writes it every
``daemon.status_interval_s`` (and at every change of phase or pause) to
``<root>/.dsa-stream-run.status.json`` by atomic rename. ``dsa-stream status``
reads it when the process it names is still alive; otherwise it is stale.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from dsa_stream.config import Settings
from dsa_stream.pipeline.worker import WorkerSnapshot
from dsa_stream.registry.workers import local_liveness_problem, this_host

logger = logging.getLogger(__name__)

#: Name of the status file in the site root.
STATUS_FILENAME = ".dsa-stream-run.status.json"


class DaemonSnapshot(BaseModel):
    """The daemon's own view of itself (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: int
    host: str
    boot_id: str
    proc_start: str
    worker_id: str
    mode: str
    """``service`` or ``burst``."""
    phase: str
    """``starting``, ``running``, ``stopping`` (a stage may be finishing), ``stopped``."""
    started_at: datetime
    updated_at: datetime
    stop_reason: str | None = None
    kinds: tuple[str, ...] = ()
    """Job kinds this daemon's worker runs."""
    worker: WorkerSnapshot | None = None
    threads: dict[str, bool] = {}
    """Service thread -> alive."""
    paused_reason: str | None = None
    disk_free_bytes: dict[str, int | None] = {}
    disk_min_free_bytes: dict[str, int] = {}
    memory_available_bytes: int | None = None
    ingest: dict[str, int] = {}
    """The ingestor's running counters (``files_found_by_scan_only``, ...)."""
    http: str | None = None
    """``host:port`` of ``/health`` and ``/metrics`` (None: off)."""


def status_path(settings: Settings) -> Path:
    """The status file of a site."""
    return settings.paths.root / STATUS_FILENAME


def write_status(path: Path, snapshot: DaemonSnapshot) -> None:
    """Replace the status file atomically (informational: no fsync)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(snapshot.model_dump_json(indent=1))
        tmp.replace(path)
    except OSError as exc:
        logger.warning("cannot write the status file %s: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


def read_status(path: Path) -> DaemonSnapshot | None:
    """The status file's snapshot, or None when absent or unreadable."""
    try:
        return DaemonSnapshot.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError):
        return None


def live_status(path: Path) -> tuple[DaemonSnapshot | None, str | None]:
    """The snapshot of a daemon running on this host, or why there is none.

    Returns:
        (snapshot, None) for a live daemon; (snapshot or None, why not live) otherwise.
    """
    snap = read_status(path)
    if snap is None:
        return None, "no daemon status file (is `dsa-stream run` running?)"
    if snap.host != this_host():
        return snap, f"the status file is from host {snap.host}"
    if snap.phase == "stopped":
        return snap, f"the daemon stopped at {snap.updated_at:%Y-%m-%d %H:%M:%S} UTC"
    problem = local_liveness_problem(snap.pid, snap.proc_start, snap.boot_id)
    if problem is not None:
        return snap, f"the daemon is gone ({problem})"
    return snap, None
