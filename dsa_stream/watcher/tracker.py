"""Files seen but not yet registered or rejected: settle, retry with backoff, grace.

Pure bookkeeping (no I/O, no database), driven by an injected clock, so the rules
are testable without waiting:

* **settle**: a version ``(size, mtime_ns, ctime, inode)`` is settled when it stayed
  the same across checks at least ``settle_s`` apart, or when its last change
  (``max(mtime, ctime)``) is already ``settle_s`` old at a check (a backlog file
  is inspected at once);
* **retry**: a version with a retryable problem is re-inspected after
  ``retry_backoff_s``, doubling up to ``retry_backoff_max_s``, and never later than
  its grace deadline;
* **grace**: measured from the file's last change on disk (not from when this
  process first saw it), so it survives restarts; after it a retryable problem
  becomes a rejection.

Any change of the file starts over (new version: settle again, attempts reset).
Wall-clock times here are bookkeeping, never observation times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dsa_stream.config import WatcherConfig
from dsa_stream.watcher.scan import FileStat

#: How a candidate was first found.
ORIGINS = ("startup", "scan", "event")


def ns_to_datetime(ns: int) -> datetime:
    """A POSIX timestamp in nanoseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


@dataclass
class Candidate:
    """A file version waiting to be registered or rejected."""

    rel_path: str
    stat: FileStat
    first_seen_at: datetime
    """When this process first saw the path (any version)."""
    stable_since: datetime
    """When the current version was first seen."""
    next_check_at: datetime
    origin: str
    """``startup`` (start-up scans), ``scan`` (a later reconcile scan) or ``event``."""
    hinted: bool = False
    """The observer reported the path (used for ``files_found_by_scan_only``)."""
    attempts: int = 0
    """Inspections of the current version that found a retryable problem."""
    problem: str | None = None
    """The last retryable problem."""
    settled_at: datetime | None = None
    """When the current version was found settled (set by :meth:`Tracker.settled`)."""

    @property
    def last_change(self) -> datetime:
        """The file's last change on disk (``max(mtime, ctime)``)."""
        return ns_to_datetime(self.stat.last_change_ns)


class Tracker:
    """The candidates of one directory (see the module docstring)."""

    def __init__(self, config: WatcherConfig) -> None:
        self.config = config
        self.candidates: dict[str, Candidate] = {}

    def __len__(self) -> int:
        return len(self.candidates)

    def __contains__(self, rel_path: object) -> bool:
        return rel_path in self.candidates

    def get(self, rel_path: str) -> Candidate | None:
        """The candidate of a path, if any."""
        return self.candidates.get(rel_path)

    def observe(
        self, rel_path: str, stat: FileStat, now: datetime, *, origin: str, hinted: bool = False
    ) -> Candidate:
        """Record a sighting of a path: new candidate, same version, or a changed version.

        A new or changed version is due at once when its last change is already
        ``settle_s`` old, else ``settle_s`` later.
        """
        cand = self.candidates.get(rel_path)
        if cand is None:
            cand = Candidate(rel_path, stat, now, now, now, origin, hinted)
            cand.next_check_at = self._settle_check_at(cand, now)
            self.candidates[rel_path] = cand
            return cand
        cand.hinted = cand.hinted or hinted
        if stat != cand.stat:
            cand.stat = stat
            cand.stable_since = now
            cand.attempts = 0
            cand.problem = None
            cand.settled_at = None
            cand.next_check_at = self._settle_check_at(cand, now)
        return cand

    def _settle_check_at(self, cand: Candidate, now: datetime) -> datetime:
        settle = timedelta(seconds=self.config.settle_s)
        if now - cand.last_change >= settle:
            return now
        return min(cand.stable_since + settle, max(cand.last_change + settle, now))

    def settled(self, cand: Candidate, now: datetime) -> bool:
        """True when the candidate's current version may be inspected at ``now``.

        The caller must have checked that the file still has ``cand.stat``.
        """
        settle = timedelta(seconds=self.config.settle_s)
        ok = now - cand.stable_since >= settle or now - cand.last_change >= settle
        if ok and cand.settled_at is None:
            cand.settled_at = now
        if not ok:
            cand.next_check_at = self._settle_check_at(cand, now)
        return ok

    def grace_deadline(self, cand: Candidate) -> datetime:
        """When a retryable problem of the current version becomes a rejection."""
        return cand.last_change + timedelta(seconds=self.config.validation_grace_s)

    def grace_expired(self, cand: Candidate, now: datetime) -> bool:
        """True when the current version has been invalid for the whole grace period."""
        return now >= self.grace_deadline(cand)

    def retry_later(self, cand: Candidate, now: datetime, problem: str) -> datetime:
        """Schedule the next inspection after a retryable problem; returns its time."""
        cand.attempts += 1
        cand.problem = problem
        cfg = self.config
        delay = min(
            cfg.retry_backoff_s * 2.0 ** min(cand.attempts - 1, 32), cfg.retry_backoff_max_s
        )
        cand.next_check_at = min(now + timedelta(seconds=delay), self.grace_deadline(cand))
        return cand.next_check_at

    def defer(self, cand: Candidate, now: datetime, seconds: float) -> None:
        """Look again later without counting an attempt (e.g. the registry was busy)."""
        cand.next_check_at = now + timedelta(seconds=seconds)

    def drop(self, rel_path: str) -> Candidate | None:
        """Forget a path (registered, rejected or gone)."""
        return self.candidates.pop(rel_path, None)

    def due(self, now: datetime, limit: int | None = None) -> list[Candidate]:
        """Candidates whose check time has come, oldest check first, then by name.

        Name order is observation order for subband files.
        """
        ready = [c for c in self.candidates.values() if c.next_check_at <= now]
        ready.sort(key=lambda c: (c.next_check_at, c.rel_path))
        return ready if limit is None else ready[:limit]

    def next_due_at(self) -> datetime | None:
        """The earliest check time of any candidate."""
        if not self.candidates:
            return None
        return min(c.next_check_at for c in self.candidates.values())
