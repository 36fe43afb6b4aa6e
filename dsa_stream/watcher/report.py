"""What ingestion did: a per-pass report (``ingest --once``) and running counters (daemon)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileNote(_Frozen):
    """One file and what happened to it (or why it is still waiting)."""

    rel_path: str
    outcome: str
    """registered, late, conflict, duplicate, changed, rejected (registry or watcher),
    pending-retry, pending-settle, missing, removed."""
    reason: str | None = None
    group_key: str | None = None
    retryable: bool | None = None
    """For watcher rejections and retries: whether waiting could have helped."""


class GroupNote(_Frozen):
    """A group that completed or timed out in this pass."""

    group_key: str
    state: str
    convert_job_id: int | None = None
    missing_subbands: tuple[int, ...] = ()


class IngestReport(_Frozen):
    """Summary of one ingest pass (:func:`~dsa_stream.watcher.ingest.ingest_once`)."""

    directory: str
    root_id: str
    started_at: datetime
    finished_at: datetime
    files_seen: int
    """Subband-like files on disk (valid names, plus ``*.hdf5`` with a wrong name)."""
    ignored: int
    """Temporary names and names that are not data files."""
    registered: int
    """New valid files recorded (including ``late`` ones)."""
    unchanged: int
    """Files the registry already held in exactly this version (not re-read)."""
    pending_settle: tuple[str, ...]
    """Files still changing or too recently changed to be inspected."""
    pending_retry: tuple[FileNote, ...]
    """Files not valid yet, within the grace period (the reason says why)."""
    rejected: tuple[FileNote, ...]
    """Files recorded as not valid in this pass (``rejected_files``)."""
    quarantined: tuple[FileNote, ...]
    """Valid files the registry set aside: conflicting or identical duplicates, replaced
    content, subband out of range or Dec mismatch."""
    late: tuple[FileNote, ...]
    """Valid files registered after their group had left ``collecting``."""
    missing: tuple[str, ...]
    """Registered files no longer on disk (marked ``missing``)."""
    groups_completed: tuple[GroupNote, ...]
    groups_expired: tuple[GroupNote, ...]
    jobs_enqueued: tuple[int, ...]
    """Convert jobs enqueued (completed groups and groups processed after the timeout)."""
    rejections_resolved: int
    """Earlier rejections closed because a valid version arrived or the file was removed."""


#: Names of the running counters (daemon metrics), in display order.
COUNTER_NAMES = (
    "scans",
    "event_hints",
    "files_found_by_scan_only",
    "registered",
    "unchanged",
    "late",
    "quarantined",
    "rejected",
    "retries",
    "vanished",
    "missing",
    "rejections_resolved",
    "groups_completed",
    "groups_expired",
    "jobs_enqueued",
    "ignored",
    "observer_restarts",
    "handler_errors",
    "overflows",
    "db_errors",
)


class Counters:
    """Thread-safe running counters of an ingestor (read them with :meth:`snapshot`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        """Increase one counter."""
        if name not in COUNTER_NAMES:
            raise KeyError(f"unknown counter {name!r}")
        with self._lock:
            self._values[name] += n

    def snapshot(self) -> dict[str, int]:
        """Every counter (zeros included), in :data:`COUNTER_NAMES` order."""
        with self._lock:
            return {name: int(self._values[name]) for name in COUNTER_NAMES}
