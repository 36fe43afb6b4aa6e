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


# -- calibration table sets -------------------------------------------------------------

#: Suffix of each table of a calibration set: ``<set>.G0`` (pre-bandpass phases, used
#: only during the bandpass solve), ``<set>.B`` (bandpass), ``<set>.G`` (gains).
CALTABLE_SUFFIXES = {"prebandpass": "G0", "bandpass": "B", "gain": "G"}
#: Plots of a set: ``<set>_<kind>.png``.
CALPLOT_KINDS = ("bandpass_amp", "bandpass_phase", "gains")
_CALIBRATOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+\-]*$")
_CALSET_RE = re.compile(rf"^(?P<ts>{_TS})_(?P<cal>[A-Za-z0-9][A-Za-z0-9.+\-]*)$")


class CalSetName(NamedTuple):
    """Components of a calibration set name ``<group key>_<calibrator>``.

    The group key is the observation start of the calibrator group (from the data).
    """

    group_key: str
    calibrator: str


def format_calset_name(name: CalSetName) -> str:
    """Return ``YYYY-MM-DDTHH:MM:SS_<calibrator>`` (e.g. ``2025-10-02T12:49:11_3C147``)."""
    parse_group_key(name.group_key)
    if not _CALIBRATOR_RE.match(name.calibrator):
        raise NamingError(f"calibrator name not usable in file names: {name.calibrator!r}")
    return f"{name.group_key}_{name.calibrator}"


def parse_calset_name(text: str) -> CalSetName:
    """Inverse of :func:`format_calset_name`."""
    m = _CALSET_RE.match(text)
    if m is None:
        raise NamingError(f"not a calibration set name: {text!r}")
    return CalSetName(m["ts"], m["cal"])


def caltable_filename(set_name: str, table: str) -> str:
    """``<set>.B`` / ``<set>.G`` / ``<set>.G0`` for table kind bandpass / gain / prebandpass."""
    parse_calset_name(set_name)
    if table not in CALTABLE_SUFFIXES:
        raise NamingError(f"unknown calibration table kind {table!r}")
    return f"{set_name}.{CALTABLE_SUFFIXES[table]}"


def parse_caltable_filename(filename: str) -> tuple[CalSetName, str]:
    """The set name and table kind of a calibration table name."""
    stem, _, suffix = filename.rpartition(".")
    kinds = {v: k for k, v in CALTABLE_SUFFIXES.items()}
    if suffix not in kinds:
        raise NamingError(f"not a calibration table name: {filename!r}")
    return parse_calset_name(stem), kinds[suffix]


def calset_ms_filename(set_name: str) -> str:
    """The calibrator MS of a set (phased to the calibrator): ``<set>.ms``."""
    parse_calset_name(set_name)
    return f"{set_name}.ms"


def calplot_filename(set_name: str, kind: str) -> str:
    """A plot of a set: ``<set>_<kind>.png``, kind in :data:`CALPLOT_KINDS`."""
    parse_calset_name(set_name)
    if kind not in CALPLOT_KINDS:
        raise NamingError(f"unknown calibration plot kind {kind!r}")
    return f"{set_name}_{kind}.png"


#: The result record of a solved set, next to its tables.
CALSET_RECORD_FILENAME = "calibration.json"
#: Provenance of the calibration applied to an MS, inside the MS directory.
MS_CALIBRATION_RECORD = "DSA_STREAM_CALIBRATION.json"
#: Directory of calibration sets under ``paths.products``.
CALTABLES_DIRNAME = "caltables"


# -- measurement sets ---------------------------------------------------------------------


def ms_filename(key: str) -> str:
    """Name of a group's Measurement Set: ``<group key>.ms``.

    The pattern is exact, so leftovers such as ``.phased.ms`` or ``.partial`` never match.
    """
    parse_group_key(key)
    return f"{key}.ms"


def parse_ms_filename(filename: str) -> str:
    """The group key of a name made by :func:`ms_filename`."""
    if not filename.endswith(".ms"):
        raise NamingError(f"not a group MS name: {filename!r}")
    key = filename[:-3]
    parse_group_key(key)
    return key


# -- per-job logs ------------------------------------------------------------------------

_JOB_LOG_RE = re.compile(r"^job-(?P<job>\d+)-(?P<kind>[a-z_]+)-a(?P<attempt>\d+)\.log$")


class JobLogName(NamedTuple):
    """Components of a per-attempt job log ``job-<id>-<kind>-a<attempt>.log``."""

    job_id: int
    kind: str
    attempt: int


def job_log_filename(job_id: int, kind: str, attempt: int) -> str:
    """Name of the log file of one job attempt (under ``<logs>/jobs/``)."""
    name = f"job-{job_id}-{kind}-a{attempt}.log"
    if _JOB_LOG_RE.match(name) is None:
        raise NamingError(f"cannot name a log for job {job_id!r} kind {kind!r} attempt {attempt!r}")
    return name


def parse_job_log_filename(filename: str) -> JobLogName:
    """Inverse of :func:`job_log_filename`."""
    m = _JOB_LOG_RE.match(filename)
    if m is None:
        raise NamingError(f"not a job log name: {filename!r}")
    return JobLogName(int(m["job"]), m["kind"], int(m["attempt"]))


# -- mosaics -----------------------------------------------------------------------------

_MOSAIC_RE = re.compile(rf"^mosaic_(?P<key>{_TS})_v(?P<version>[1-9]\d*)$")
#: Files of a mosaic: ``<stem>.fits`` (Jy/beam), ``<stem>_noise.fits`` (expected noise,
#: Jy/beam), ``<stem>.png`` (preview), ``<stem>_qa.json`` (the stage result).
MOSAIC_FILE_SUFFIXES = {
    "image": ".fits",
    "noise": "_noise.fits",
    "preview": ".png",
    "qa": "_qa.json",
}
#: Directory of mosaics under ``paths.products``.
MOSAICS_DIRNAME = "mosaics"


class MosaicName(NamedTuple):
    """Components of a mosaic name ``mosaic_<window key>_v<version>``.

    The window key is the group key of the window's first member when the window was
    first planned (an observation start from the data); it never changes, while the
    version grows when a late member or a new member image makes the window rebuild.
    """

    window_key: str
    version: int


def mosaic_window_key(first_group_key: str) -> str:
    """Key of the mosaic window whose first member is this group: the group key itself."""
    parse_group_key(first_group_key)
    return first_group_key


def format_mosaic_stem(name: MosaicName) -> str:
    """Return ``mosaic_YYYY-MM-DDTHH:MM:SS_v<version>`` (version >= 1)."""
    parse_group_key(name.window_key)
    if name.version < 1:
        raise NamingError(f"mosaic version must be >= 1, got {name.version}")
    return f"mosaic_{name.window_key}_v{name.version}"


def parse_mosaic_stem(text: str) -> MosaicName:
    """Inverse of :func:`format_mosaic_stem`."""
    m = _MOSAIC_RE.match(text)
    if m is None:
        raise NamingError(f"not a mosaic name: {text!r}")
    return MosaicName(m["key"], int(m["version"]))


def mosaic_filename(name: MosaicName, kind: str) -> str:
    """A file of a mosaic: kind in :data:`MOSAIC_FILE_SUFFIXES` (image, noise, preview, qa)."""
    if kind not in MOSAIC_FILE_SUFFIXES:
        raise NamingError(f"unknown mosaic file kind {kind!r}")
    return format_mosaic_stem(name) + MOSAIC_FILE_SUFFIXES[kind]


def parse_mosaic_filename(filename: str) -> tuple[MosaicName, str]:
    """The mosaic name and file kind of a mosaic file name."""
    for kind, suffix in sorted(MOSAIC_FILE_SUFFIXES.items(), key=lambda kv: -len(kv[1])):
        if filename.endswith(suffix):
            return parse_mosaic_stem(filename[: -len(suffix)]), kind
    raise NamingError(f"not a mosaic file name: {filename!r}")


# -- images ------------------------------------------------------------------------------

#: Imaging products of one image stem (a group key, or a name given on the command
#: line): kind -> file-name suffix. Every FITS product shares one 2-D grid.
IMAGE_PRODUCT_SUFFIXES: dict[str, str] = {
    "image": ".image.fits",
    "residual": ".residual.fits",
    "pb": ".pb.fits",
    "pbcor": ".pbcor.fits",
    "preview": ".image.png",
    "summary": ".image.json",
    "log": ".imaging.log",
}


class ImageProductName(NamedTuple):
    """Components of an imaging product name ``<stem><suffix of kind>``."""

    stem: str
    kind: str


def format_image_product(name: ImageProductName) -> str:
    """Return ``<stem>.image.fits``, ``<stem>.pb.fits``, ... for the product kind."""
    if name.kind not in IMAGE_PRODUCT_SUFFIXES:
        raise NamingError(f"unknown image product kind: {name.kind!r}")
    if not name.stem or "/" in name.stem or name.stem.startswith("."):
        raise NamingError(f"invalid image stem: {name.stem!r}")
    return f"{name.stem}{IMAGE_PRODUCT_SUFFIXES[name.kind]}"


def parse_image_product(filename: str) -> ImageProductName:
    """Inverse of :func:`format_image_product` (a base name, not a path).

    Raises:
        NamingError: if the name has no imaging-product suffix or an empty stem.
    """
    # Longest suffix first: ".pbcor.fits" must not be read as stem "x.pbcor" of ".fits".
    for kind, suffix in sorted(IMAGE_PRODUCT_SUFFIXES.items(), key=lambda kv: -len(kv[1])):
        if filename.endswith(suffix) and len(filename) > len(suffix):
            stem = filename[: -len(suffix)]
            if stem.endswith((".image", ".residual", ".pb", ".pbcor")):
                continue
            return ImageProductName(stem, kind)
    raise NamingError(f"not an imaging product name: {filename!r}")


def image_stem(key: str) -> str:
    """The product stem of a group's image: the group key itself."""
    parse_group_key(key)
    return key


# -- product sets (pipeline staging and products directories) ------------------------------

#: Directory of group images (one directory per image set) under staging and products.
IMAGES_DIRNAME = "images"
#: Directory of Measurement Sets under staging.
MS_DIRNAME = "ms"
_PARTIAL_RE = re.compile(r"^\.(?P<name>.+)\.(?P<token>[A-Za-z0-9_-]{1,64})\.partial$")


def image_set_dirname(key: str, version: int) -> str:
    """Directory of version ``version`` of a group's image set: ``<group key>_v<version>``."""
    parse_group_key(key)
    if version < 1:
        raise NamingError(f"image version must be >= 1, got {version}")
    return f"{key}_v{version}"


def partial_name(name: str, token: str) -> str:
    """Name of an attempt's work-in-progress copy of ``name``: ``.<name>.<token>.partial``."""
    if not name or "/" in name or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", token):
        raise NamingError(f"invalid partial name: {name!r} / {token!r}")
    return f".{name}.{token}.partial"


def parse_partial_name(filename: str) -> tuple[str, str]:
    """(name, token) of a name made by :func:`partial_name`."""
    m = _PARTIAL_RE.match(filename)
    if m is None:
        raise NamingError(f"not a partial name: {filename!r}")
    return m["name"], m["token"]
