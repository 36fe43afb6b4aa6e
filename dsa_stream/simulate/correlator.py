"""Put files on disk the way the correlator does, in real time.

This is a thin layer over :mod:`dsa_stream.simulate.uvh5`:

* ``direct``: each file is written under its final name in one go;
* ``rename``: each file is written as ``.<name>.tmp`` in the same directory and renamed
  into place when complete, so the final name never shows a partial file;
* ``slow``: the 16 files of an observation are created under their final names and grow
  together by whole integrations in ``slow_chunks`` appends spread over
  ``write_seconds`` (resizing the datasets, as the real writer does), so a reader sees
  growing, incomplete files until the last append.

:class:`Pacer` spaces observations ``cadence_s`` apart on the monotonic clock. This
pacing is the only place where the simulator looks at real time; it never changes the
content of the files. Both honour a ``threading.Event`` to stop early.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from dsa_stream.simulate.options import WriterOptions
from dsa_stream.simulate.uvh5 import SubbandFile, UVH5Writer, write_subband_file

logger = logging.getLogger(__name__)


class FileWritten(NamedTuple):
    """A file that is complete under its final name."""

    group_index: int
    subband: int
    path: Path
    size_bytes: int


class PendingFile(NamedTuple):
    """A file to write: where, and what."""

    group_index: int
    subband: int
    path: Path
    content: SubbandFile


FileCallback = Callable[[FileWritten], None]


def temporary_path(path: Path) -> Path:
    """The hidden temporary name used by the rename mode: ``.<name>.tmp`` beside ``path``."""
    return path.with_name(f".{path.name}.tmp")


def _stopped(stop_event: threading.Event | None) -> bool:
    return stop_event is not None and stop_event.is_set()


def _finish(item: PendingFile, on_file: FileCallback | None) -> FileWritten:
    done = FileWritten(item.group_index, item.subband, item.path, item.path.stat().st_size)
    logger.debug("wrote %s (%d bytes)", item.path.name, done.size_bytes)
    if on_file is not None:
        on_file(done)
    return done


def write_one(item: PendingFile, mode: str, on_file: FileCallback | None = None) -> FileWritten:
    """Write one file in ``direct`` or ``rename`` mode."""
    if mode == "rename":
        tmp = temporary_path(item.path)
        try:
            write_subband_file(tmp, item.content)
            os.replace(tmp, item.path)
        finally:
            if tmp.exists():
                tmp.unlink()
    else:
        write_subband_file(item.path, item.content)
    return _finish(item, on_file)


def write_slow(
    items: Sequence[PendingFile],
    writer: WriterOptions,
    stop_event: threading.Event | None = None,
    on_file: FileCallback | None = None,
) -> list[FileWritten]:
    """Grow all ``items`` together in ``slow_chunks`` appends over ``write_seconds``.

    When stopped early the files stay incomplete under their final names (as after a
    correlator crash) and are not reported.
    """
    if not items:
        return []
    ntimes = items[0].content.ntimes
    per_chunk = math.ceil(ntimes / writer.slow_chunks)
    pause = writer.write_seconds / writer.slow_chunks
    writers = [UVH5Writer(item.path, item.content) for item in items]
    try:
        while not all(w.done for w in writers):
            for w in writers:
                w.append(per_chunk)
            if all(w.done for w in writers):
                break
            if stop_event is not None:
                if stop_event.wait(pause):
                    return []
            elif pause > 0:
                time.sleep(pause)
    finally:
        for w in writers:
            w.close()
    return [_finish(item, on_file) for item in items]


def write_observation(
    items: Iterable[PendingFile],
    writer: WriterOptions,
    stop_event: threading.Event | None = None,
    on_file: FileCallback | None = None,
) -> list[FileWritten]:
    """Write the files of one observation in the configured mode.

    ``items`` may be a lazy iterable: the direct and rename modes consume it one file at
    a time (one subband in memory); the slow mode needs all of them at once.
    """
    if writer.mode == "slow":
        return write_slow(list(items), writer, stop_event, on_file)
    written = []
    for item in items:
        if _stopped(stop_event):
            break
        written.append(write_one(item, writer.mode, on_file))
    return written


class Pacer:
    """Releases observation ``k`` at ``t0 + k * cadence_s`` (monotonic clock).

    ``t0`` is the moment of the first :meth:`wait`. Without a cadence it never waits.
    """

    def __init__(self, cadence_s: float | None, stop_event: threading.Event | None = None):
        self.cadence_s = cadence_s
        self.stop_event = stop_event
        self._t0: float | None = None

    def wait(self, k: int) -> bool:
        """Block until observation ``k`` is due; False if stopped meanwhile."""
        if self._t0 is None:
            self._t0 = time.monotonic()
        if self.cadence_s is None:
            return not _stopped(self.stop_event)
        delay = self._t0 + k * self.cadence_s - time.monotonic()
        if delay < 0 and k > 0:
            logger.warning("observation %d is %.1f s late for its cadence slot", k, -delay)
        if delay <= 0:
            return not _stopped(self.stop_event)
        if self.stop_event is not None:
            return not self.stop_event.wait(delay)
        time.sleep(delay)
        return True
