"""Listing the incoming directory: name classes, file stats, the reconcile scan's input.

The scan is flat (the correlator writes into one directory) and cheap: one
``os.scandir`` plus one ``stat`` per entry; nothing is opened.
"""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from dsa_stream import naming

logger = logging.getLogger(__name__)

#: Suffixes of data files: such a file with a name that is not a subband name is
#: rejected with the reason (never silently skipped); other names are ignored.
DATA_SUFFIXES = (".hdf5", ".h5", ".uvh5")


class NameKind(StrEnum):
    """What a directory entry's name says about it."""

    SUBBAND = "subband"
    """``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5``: a candidate."""
    TEMPORARY = "temporary"
    """A producer's temporary name (dotfile, ``*.tmp``, ``*.part``, ``*_incomplete.hdf5``)."""
    MISNAMED = "misnamed"
    """A data file (``.hdf5``/``.h5``/``.uvh5``) whose name is not a subband name."""
    OTHER = "other"
    """Anything else (``truth.json``, logs, ...)."""
    UNDECODABLE = "undecodable"
    """A name that is not UTF-8: it cannot be recorded in the registry (logged)."""


#: Name kinds that become candidates (registered or rejected, never skipped).
CANDIDATE_KINDS = frozenset({NameKind.SUBBAND, NameKind.MISNAMED})


def classify_name(name: str) -> NameKind:
    """The :class:`NameKind` of a base name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode's surrogate escapes of undecodable bytes
        return NameKind.UNDECODABLE
    if naming.is_temporary_filename(name):
        return NameKind.TEMPORARY
    if naming.is_subband_filename(name):
        return NameKind.SUBBAND
    if name.lower().endswith(DATA_SUFFIXES):
        return NameKind.MISNAMED
    return NameKind.OTHER


class FileStat(NamedTuple):
    """The parts of ``stat`` that tell whether a file changed."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @property
    def fingerprint(self) -> tuple[int, int]:
        """``(size, mtime_ns)``: what the registry stores about a version."""
        return self.size, self.mtime_ns

    @property
    def last_change_ns(self) -> int:
        """Latest of mtime and ctime.

        A rename into place or an mtime-preserving copy changes ctime even when
        mtime is old.
        """
        return max(self.mtime_ns, self.ctime_ns)

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        """From an ``os.stat`` result."""
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def stat_file(path: Path) -> FileStat | None:
    """Stat a regular file; None when it is gone or not a regular file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return FileStat.of(st)


class ScanResult(NamedTuple):
    """One listing of the directory."""

    files: dict[str, FileStat]
    """Candidates (subband and misnamed data files) by name."""
    ignored: tuple[tuple[str, NameKind], ...]
    """Temporary, other and undecodable names (directories included, as OTHER)."""
    ok: bool
    """False when the directory could not be listed (nothing may be concluded)."""
    error: str | None = None


def scan_directory(directory: Path) -> ScanResult:
    """List ``directory`` (not recursively) and stat every candidate."""
    files: dict[str, FileStat] = {}
    ignored: list[tuple[str, NameKind]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                kind = classify_name(entry.name)
                try:
                    is_file = entry.is_file()
                    st = entry.stat() if is_file else None
                except OSError:  # vanished between listing and stat
                    continue
                if st is None or kind not in CANDIDATE_KINDS:
                    ignored.append((entry.name, kind if st is not None else NameKind.OTHER))
                    continue
                files[entry.name] = FileStat.of(st)
    except OSError as exc:
        logger.error("cannot list %s: %s", directory, exc)
        return ScanResult({}, (), ok=False, error=str(exc))
    return ScanResult(files, tuple(ignored), ok=True)
