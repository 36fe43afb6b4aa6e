"""Every file and directory name of dsa-stream: parse and format, in one module.

Names carry observation times (from the data, UTC), never wall-clock times.
Each name kind has a ``NamedTuple`` of components, a ``format_*`` and a
``parse_*`` function that round-trip exactly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from dsa_stream.exceptions import NamingError

#: Timestamp format of DSA-110 file names and of our group keys (UTC, seconds).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"
_TS = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
_SUBBAND_RE = re.compile(rf"^(?P<ts>{_TS})_sb(?P<sb>\d{{2}})\.hdf5$")
_GROUP_KEY_RE = re.compile(rf"^{_TS}$")

#: Suffixes and prefixes that mark files still being written by a producer:
#: rsync temp files (``.name.XXXXXX``), the DSA-110 writer's ``*_incomplete.hdf5``,
#: and the usual ``.tmp`` / ``.part`` / ``.partial``.
_TEMP_SUFFIXES = (".tmp", ".part", ".partial", "_incomplete.hdf5")


class SubbandName(NamedTuple):
    """Components of a subband file name ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5``."""

    timestamp: datetime
    subband: int


def _parse_timestamp(text: str) -> datetime:
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise NamingError(f"not a UTC timestamp of the form {TIMESTAMP_FORMAT}: {text!r}") from exc


def format_timestamp(when: datetime) -> str:
    """Format an aware UTC datetime as ``YYYY-MM-DDTHH:MM:SS`` (truncated to seconds)."""
    if when.tzinfo is None:
        raise NamingError("naive datetime: observation times must be timezone-aware UTC")
    return when.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def format_subband_filename(name: SubbandName) -> str:
    """Return ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5``."""
    if not 0 <= name.subband <= 99:
        raise NamingError(f"subband number out of range: {name.subband}")
    return f"{format_timestamp(name.timestamp)}_sb{name.subband:02d}.hdf5"


def parse_subband_filename(filename: str) -> SubbandName:
    """Parse a subband file name (a base name, not a path).

    Raises:
        NamingError: if the name does not match the DSA-110 pattern exactly.
    """
    m = _SUBBAND_RE.match(filename)
    if m is None:
        raise NamingError(f"not a DSA-110 subband file name: {filename!r}")
    return SubbandName(_parse_timestamp(m["ts"]), int(m["sb"]))


def is_subband_filename(filename: str) -> bool:
    """True when ``filename`` is a complete (not temporary) subband file name."""
    try:
        parse_subband_filename(filename)
    except NamingError:
        return False
    return True


def is_temporary_filename(filename: str) -> bool:
    """True for names that producers use while a file is still being written."""
    return filename.startswith(".") or filename.endswith(_TEMP_SUFFIXES)


def group_key(obs_start: datetime) -> str:
    """Group key of an observation: its start time from the data, to the second (UTC).

    The start is rounded to the nearest second, so sub-second differences in how
    the start was derived never split a group.
    """
    if obs_start.tzinfo is None:
        raise NamingError("naive datetime: observation times must be timezone-aware UTC")
    rounded = obs_start.astimezone(UTC) + timedelta(microseconds=500_000)
    return format_timestamp(rounded.replace(microsecond=0))


def parse_group_key(key: str) -> datetime:
    """Inverse of :func:`group_key`: the observation start as an aware UTC datetime."""
    if _GROUP_KEY_RE.match(key) is None:
        raise NamingError(f"not a group key: {key!r}")
    return _parse_timestamp(key)


def truth_filename(key: str) -> str:
    """Name of the simulator's per-group truth file in the output directory."""
    parse_group_key(key)
    return f"{key}_truth.json"


#: Name of the simulator's night-level truth file.
NIGHT_TRUTH_FILENAME = "truth.json"
#: Name of a site's configuration file written by ``dsa-stream init``.
SITE_CONFIG_FILENAME = "dsa-stream.yaml"
#: Name of the embedded SQLite registry inside a site.
SITE_REGISTRY_FILENAME = "registry.sqlite3"
