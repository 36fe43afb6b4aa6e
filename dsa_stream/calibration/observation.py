"""What calibration needs to know about one group, read from its data (never the clock).

:class:`GroupObservation` holds the integration times, the apparent pointing Dec, the
per-integration meridian (pointing) centres in ICRS, the band and, for an MS, its
single phase centre. It is read either from the UVH5 headers of the subband files
(h5py, via :func:`dsa_stream.conversion.inputs.read_group`) or from a Measurement Set
written by :mod:`dsa_stream.conversion` (python-casacore, imported lazily so that this
module stays importable next to casatools).

A time that cannot be read, or that is not a plausible observation time, raises
:class:`ObservationTimeError`: the pipeline quarantines such a group and never
substitutes the current time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from dsa_stream.calibration.geometry import SECONDS_PER_DAY, meridian_centres_icrs
from dsa_stream.exceptions import CalibrationError, InputFileError

logger = logging.getLogger(__name__)

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
#: MJD epoch as a datetime.
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
#: Plausible observation times (MJD): 2000-01-01 .. 2100-01-01. Anything outside is a
#: corrupt or missing time (e.g. 0, or Unix seconds read as MJD seconds).
MJD_MIN, MJD_MAX = 51544.0, 88069.0
#: Keywords and subtable written by the conversion.
DEC_KEYWORD = "DSA_POINTING_DEC"
CENTRES_TABLE = "DSA_MERIDIAN_CENTRES"


class ObservationTimeError(CalibrationError):
    """The observation time of a group cannot be read from its data (quarantine it)."""

    permanent = True


def mjd_to_datetime(mjd: float) -> datetime:
    """Aware UTC datetime of an MJD (microsecond precision)."""
    return MJD_EPOCH + timedelta(days=float(mjd))


def datetime_to_mjd(when: datetime) -> float:
    """MJD of an aware datetime."""
    if when.tzinfo is None:
        raise CalibrationError("naive datetime: observation times must be timezone-aware UTC")
    return (when.astimezone(UTC) - MJD_EPOCH) / timedelta(days=1)


class GroupObservation(BaseModel):
    """One group's times, pointing and band, from its data."""

    model_config = _FROZEN

    source: Literal["uvh5", "ms"]
    paths: tuple[Path, ...]
    """The subband files, or the MS."""
    times_mjd: tuple[float, ...]
    """Integration centres (MJD, UTC), ascending."""
    integration_s: float
    pointing_dec_deg: float
    """Apparent pointing Dec (deg)."""
    centres_icrs_deg: tuple[tuple[float, float], ...]
    """ICRS (RA, Dec) of the meridian (pointing) centre of each integration (deg)."""
    freq_min_hz: float
    freq_max_hz: float
    n_channels: int
    phase_centre_deg: tuple[float, float] | None = None
    """The MS's single phase centre (ICRS deg), None for UVH5 or several fields."""
    phase_centre_name: str | None = None

    @property
    def start_mjd(self) -> float:
        """Start of the first integration (MJD)."""
        return self.times_mjd[0] - 0.5 * self.integration_s / SECONDS_PER_DAY

    @property
    def end_mjd(self) -> float:
        """End of the last integration (MJD)."""
        return self.times_mjd[-1] + 0.5 * self.integration_s / SECONDS_PER_DAY

    @property
    def mid_mjd(self) -> float:
        """Middle of the observation (MJD): the time validity windows are checked at."""
        return 0.5 * (self.start_mjd + self.end_mjd)

    @property
    def start(self) -> datetime:
        """Start as an aware UTC datetime."""
        return mjd_to_datetime(self.start_mjd)

    @property
    def mid(self) -> datetime:
        """Middle as an aware UTC datetime."""
        return mjd_to_datetime(self.mid_mjd)

    @property
    def end(self) -> datetime:
        """End as an aware UTC datetime."""
        return mjd_to_datetime(self.end_mjd)


def check_times(times_mjd: np.ndarray, where: str) -> np.ndarray:
    """Distinct, finite, plausible integration times (MJD), else ObservationTimeError."""
    times = np.unique(np.asarray(times_mjd, dtype=np.float64))
    if times.size == 0:
        raise ObservationTimeError(f"{where}: no integration times")
    if not np.all(np.isfinite(times)) or times[0] < MJD_MIN or times[-1] > MJD_MAX:
        raise ObservationTimeError(
            f"{where}: observation times {times[0]!r}..{times[-1]!r} (MJD) are not plausible "
            f"(expected {MJD_MIN:.0f}..{MJD_MAX:.0f}); the group's time cannot be read"
        )
    if times[-1] - times[0] > 1.0:
        raise ObservationTimeError(f"{where}: integration times span more than a day")
    return times


def _centres(times: np.ndarray, dec_app_rad: float) -> tuple[tuple[float, float], ...]:
    ra, dec = meridian_centres_icrs(times, dec_app_rad)
    return tuple(
        (math.degrees(float(r)), math.degrees(float(d))) for r, d in zip(ra, dec, strict=True)
    )


def observation_from_uvh5(files: Sequence[Path]) -> GroupObservation:
    """Read a group's observation from its subband files' headers.

    Raises:
        ObservationTimeError: if the headers hold no plausible time.
        InputFileError: if a file is unreadable or inconsistent with the others.
    """
    from dsa_stream.conversion.inputs import read_group

    paths = tuple(Path(f) for f in files)
    try:
        group = read_group(paths)
    except InputFileError as exc:
        if "time_array" in str(exc):
            raise ObservationTimeError(str(exc)) from exc
        raise
    times = check_times(group.times_jd() - 2400000.5, str(paths[0].parent))
    band = group.full_band_hz()
    width = group.channel_width_hz
    return GroupObservation(
        source="uvh5",
        paths=paths,
        times_mjd=tuple(float(t) for t in times),
        integration_s=float(np.median(group.first.integration_s)),
        pointing_dec_deg=math.degrees(group.first.dec_rad),
        centres_icrs_deg=_centres(times, group.first.dec_rad),
        freq_min_hz=float(band[0]) - 0.5 * width,
        freq_max_hz=float(band[-1]) + 0.5 * width,
        n_channels=int(band.size),
    )


def _ms_times(ms_path: Path) -> tuple[np.ndarray, float]:
    from casacore import tables

    try:
        with tables.table(str(ms_path), ack=False) as ms:
            times_s = np.asarray(ms.getcol("TIME"), dtype=np.float64)
            interval = np.asarray(ms.getcol("INTERVAL", 0, min(ms.nrows(), 10)))
    except RuntimeError as exc:
        raise ObservationTimeError(f"{ms_path}: cannot read TIME ({exc})") from exc
    if interval.size == 0:
        raise ObservationTimeError(f"{ms_path}: the main table has no rows")
    times = check_times(times_s / SECONDS_PER_DAY, str(ms_path))
    return times, float(np.median(interval))


def observation_from_ms(ms_path: Path) -> GroupObservation:
    """Read a group's observation from an MS written by :mod:`dsa_stream.conversion`.

    The pointing Dec is the ``DSA_POINTING_DEC`` keyword; the meridian centres come
    from the ``DSA_MERIDIAN_CENTRES`` subtable when present, else they are recomputed
    from the times and the Dec.

    Raises:
        ObservationTimeError: if TIME is missing or not plausible.
        CalibrationError: if the MS cannot be opened or has no pointing Dec.
    """
    from casacore import tables

    ms_path = Path(ms_path)
    if not (ms_path / "table.dat").exists():
        raise CalibrationError(f"{ms_path}: not a Measurement Set")
    times, interval = _ms_times(ms_path)
    with tables.table(str(ms_path), ack=False) as ms:
        keywords = ms.getkeywords()
    if DEC_KEYWORD not in keywords:
        raise CalibrationError(
            f"{ms_path}: no {DEC_KEYWORD} keyword (not written by dsa-stream's conversion)"
        )
    dec_rad = float(keywords[DEC_KEYWORD])
    with tables.table(f"{ms_path}/SPECTRAL_WINDOW", ack=False) as sw:
        freqs = np.asarray(sw.getcell("CHAN_FREQ", 0), dtype=np.float64)
        widths = np.abs(np.asarray(sw.getcell("CHAN_WIDTH", 0), dtype=np.float64))
    with tables.table(f"{ms_path}/FIELD", ack=False) as fld:
        dirs = np.asarray(fld.getcol("PHASE_DIR"))[:, 0, :]
        names = [str(n) for n in fld.getcol("NAME")]
    centre = None
    name = None
    if dirs.shape[0] == 1:
        centre = (math.degrees(float(dirs[0, 0])) % 360.0, math.degrees(float(dirs[0, 1])))
        name = names[0]
    return GroupObservation(
        source="ms",
        paths=(ms_path,),
        times_mjd=tuple(float(t) for t in times),
        integration_s=interval,
        pointing_dec_deg=math.degrees(dec_rad),
        centres_icrs_deg=_ms_centres(ms_path, times, dec_rad),
        freq_min_hz=float(freqs.min() - 0.5 * widths[0]),
        freq_max_hz=float(freqs.max() + 0.5 * widths[0]),
        n_channels=int(freqs.size),
        phase_centre_deg=centre,
        phase_centre_name=name,
    )


def _ms_centres(
    ms_path: Path, times: np.ndarray, dec_rad: float
) -> tuple[tuple[float, float], ...]:
    from casacore import tables

    sub = ms_path / CENTRES_TABLE
    if (sub / "table.dat").exists():
        with tables.table(str(sub), ack=False) as tb:
            t = np.asarray(tb.getcol("TIME")) / SECONDS_PER_DAY
            ra = np.degrees(np.asarray(tb.getcol("RA_ICRS")))
            dec = np.degrees(np.asarray(tb.getcol("DEC_ICRS")))
        if t.size == times.size and np.allclose(t, times, atol=1e-3 / SECONDS_PER_DAY):
            return tuple((float(r), float(d)) for r, d in zip(ra, dec, strict=True))
        logger.warning("%s: %s does not match the main table's times", ms_path, CENTRES_TABLE)
    return _centres(times, dec_rad)


def _first_time(path: Path) -> float:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            return float(fh["Header/time_array"][0])
    except (OSError, KeyError, IndexError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot read Header/time_array ({exc})") from exc


def split_groups(files: Sequence[Path]) -> list[list[Path]]:
    """Subband files grouped by observation (the first header time, equal in a group).

    File names are not used: their timestamps jitter by seconds between subbands.
    """
    by_time: dict[float, list[Path]] = {}
    for f in sorted(Path(p) for p in files):
        t = round(_first_time(f) * SECONDS_PER_DAY, 1)
        by_time.setdefault(t, []).append(f)
    return [by_time[t] for t in sorted(by_time)]


def expand_inputs(inputs: Sequence[Path]) -> list[list[Path]]:
    """The groups named by ``inputs``: one MS, directories of subband files, or files.

    Returns one list of paths per group (an MS is a group of its own).
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise CalibrationError("no input given (subband files, their directory, or an MS)")
    groups_: list[list[Path]] = []
    files: list[Path] = []
    for p in paths:
        if p.is_dir() and (p / "table.dat").exists():
            groups_.append([p])
        elif p.is_dir():
            found = sorted(p.glob("*_sb[0-9][0-9].hdf5"))
            if not found:
                raise CalibrationError(f"{p}: no subband files (*_sbNN.hdf5) in it")
            files += found
        else:
            files.append(p)
    return groups_ + (split_groups(files) if files else [])


def read_observation(inputs: Sequence[Path]) -> GroupObservation:
    """A group's observation from one MS, or from its subband files (or their directory).

    Raises:
        ObservationTimeError: if no plausible time can be read.
        CalibrationError / InputFileError: for unusable inputs or several groups.
    """
    found = expand_inputs(inputs)
    if len(found) != 1:
        raise CalibrationError(
            f"the inputs hold {len(found)} groups; give one group (or use expand_inputs)"
        )
    group = found[0]
    if len(group) == 1 and group[0].is_dir():
        return observation_from_ms(group[0])
    return observation_from_uvh5(group)


__all__ = [
    "GroupObservation",
    "ObservationTimeError",
    "datetime_to_mjd",
    "expand_inputs",
    "mjd_to_datetime",
    "observation_from_ms",
    "observation_from_uvh5",
    "read_observation",
    "split_groups",
]
