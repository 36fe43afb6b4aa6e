"""One daemon per site: an exclusive ``fcntl.flock`` on a lock file in the site root.

The kernel releases the lock when the holder exits, even after ``kill -9``, so a
stale lock file never blocks a restart (reliability §2.3, lesson (a)). The file
holds the holder's pid, host and start time, so a second instance can say who
holds the site. Keep the site root on a local filesystem: flock over NFS is not
reliable.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from dsa_stream.config import Settings
from dsa_stream.exceptions import DsaStreamError
from dsa_stream.registry.workers import this_host

logger = logging.getLogger(__name__)

#: Name of the lock file in the site root.
LOCK_FILENAME = ".dsa-stream-run.lock"


class SiteLockedError(DsaStreamError):
    """Another ``dsa-stream run`` holds the site (the message names its pid)."""

    permanent = True


def lock_path(settings: Settings) -> Path:
    """The lock file of a site (in ``paths.root``)."""
    return settings.paths.root / LOCK_FILENAME


def read_holder(path: Path) -> dict[str, object]:
    """What the lock file says about its holder (empty when unreadable)."""
    try:
        doc = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


class SiteLock:
    """Context manager holding the site's lock (see the module docstring).

    Raises:
        SiteLockedError: on enter, when another process holds the lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and record this process in the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(self.path)
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} "
                f"(since {holder.get('started_at')})"
                if holder
                else "another process"
            )
            raise SiteLockedError(
                f"another dsa-stream run holds this site: {who}; lock file {self.path}. "
                "Stop it first (`dsa-stream workers list`, `dsa-stream workers drain`)."
            ) from None
        doc = {
            "pid": os.getpid(),
            "host": this_host(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(doc).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        logger.debug("site lock %s taken", self.path)

    def release(self) -> None:
        """Release the lock (the file stays; its content is stale from now on)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SiteLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
