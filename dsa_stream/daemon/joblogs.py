"""Per-job stage logs (``<logs>/jobs/job-<id>-<kind>-a<attempt>.log``): find, tail, follow.

The worker writes one file per attempt, holding the stage's own records (with
group key and job id) and its tools' output. :class:`Follower` streams them live
for ``dsa-stream logs --follow``: it remembers an offset per file, emits complete
new lines only, starts over when a file shrinks (rotated or truncated), and picks
up files that appear later (new jobs, new attempts) as long as the selection
accepts them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dsa_stream import naming
from dsa_stream.exceptions import NamingError

#: Directory of the per-job logs under ``paths.logs``.
JOBS_DIRNAME = "jobs"


@dataclass(frozen=True)
class JobLog:
    """One attempt's log file."""

    path: Path
    job_id: int
    kind: str
    attempt: int

    @property
    def label(self) -> str:
        """Short name for line prefixes (the file name without ``.log``)."""
        return self.path.stem


#: Accepts or rejects a log file (``--job``, ``--group``, ``--kind`` filters).
Selector = Callable[[JobLog], bool]


def jobs_dir(logs_root: Path) -> Path:
    """The directory of the per-job logs."""
    return logs_root / JOBS_DIRNAME


def list_job_logs(directory: Path) -> list[JobLog]:
    """Every job log in ``directory``, by job id then attempt (other files ignored)."""
    out = []
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    for path in entries:
        try:
            name = naming.parse_job_log_filename(path.name)
        except NamingError:
            continue
        out.append(JobLog(path, name.job_id, name.kind, name.attempt))
    return sorted(out, key=lambda log: (log.job_id, log.attempt))


def tail(path: Path, n: int, upto: int | None = None) -> list[str]:
    """The last ``n`` lines of a file (all of them for ``n <= 0``), without newlines.

    ``upto`` reads only the first ``upto`` bytes (where a :class:`Follower` starts), so
    that a tail followed by a follow neither loses nor repeats a line.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read() if upto is None else fh.read(upto)
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines if n <= 0 else lines[-n:]


class Follower:
    """New lines of the selected job logs, poll by poll (module docstring).

    Args:
        directory: The per-job log directory.
        select: Which files to follow (re-evaluated for new files at every poll).
        from_end: Start already-existing files at their end (``--follow`` after the
            initial tail) instead of their beginning; files appearing later are read
            from their beginning.
    """

    def __init__(self, directory: Path, select: Selector, *, from_end: bool = True) -> None:
        self.directory = directory
        self.select = select
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}
        if from_end:
            for log in list_job_logs(directory):
                if select(log):
                    self._offsets[log.path] = _size(log.path)

    def offset(self, path: Path) -> int | None:
        """Where following ``path`` starts (None: not followed yet)."""
        return self._offsets.get(path)

    def poll(self) -> list[tuple[JobLog, str]]:
        """The complete lines written since the last poll, file by file."""
        out: list[tuple[JobLog, str]] = []
        for log in list_job_logs(self.directory):
            if log.path not in self._offsets:
                if not self.select(log):
                    continue
                self._offsets[log.path] = 0
            out.extend((log, line) for line in self._read_new(log.path))
        return out

    def _read_new(self, path: Path) -> Iterator[str]:
        size = _size(path)
        offset = self._offsets[path]
        if size < offset:  # truncated or replaced: start over
            offset = 0
            self._partial.pop(path, None)
        if size == offset:
            return
        with path.open("rb") as fh:
            fh.seek(offset)
            data = self._partial.pop(path, b"") + fh.read(size - offset)
        self._offsets[path] = size
        *lines, rest = data.split(b"\n")
        if rest:
            self._partial[path] = rest
        for line in lines:
            yield line.decode("utf-8", errors="replace")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def follow(
    follower: Follower,
    emit: Callable[[JobLog, str], None],
    stop: threading.Event,
    poll_s: float = 0.5,
    refresh: Callable[[], None] | None = None,
) -> None:
    """Emit new lines until ``stop`` is set; ``refresh`` runs before each poll."""
    while True:
        if refresh is not None:
            refresh()
        for log, line in follower.poll():
            emit(log, line)
        if stop.wait(poll_s):
            for log, line in follower.poll():  # what was written just before the stop
                emit(log, line)
            return
