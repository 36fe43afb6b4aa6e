"""Validate one subband file and read what registration needs from its header.

A file is accepted only when it opens as a complete DSA-110 UVH5 file. Every
problem raises :class:`FileProblem`, which says whether waiting could help
(``retryable``: the file may still be being written) or not (a wrong name,
inconsistent header, a time that disagrees with the name). Observation times
come from ``Header/time_array``, never from the name, mtime or the clock; the
name is only cross-checked against them.

Classification:

* retryable: the file cannot be opened or read as HDF5 (truncated, garbage, a
  header being written), structure or datasets missing, fewer integrations than
  expected, the last integration or the time stamps still zero (pre-allocated,
  not written yet), dataset lengths not yet consistent, the file changed or
  vanished while being read;
* permanent: a name that is not a subband name, a name whose subband disagrees
  with the frequencies, a name time beyond the tolerance from the header's
  start, more integrations than expected, channel or dimension counts that
  contradict each other, written time stamps or a Dec that are not plausible.

The file is opened without HDF5 file locking (``locking=False``): a reader
holding the default shared lock would stop the correlator from re-opening its
file for writing.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xxhash
from astropy.time import Time
from pydantic import AwareDatetime, BaseModel, ConfigDict

import dsa_stream.casa_env  # noqa: F401  (astropy offline before any Time conversion)
from dsa_stream import instrument, naming
from dsa_stream.exceptions import InputFileError, NamingError

_CHUNK = 8 << 20
#: Plausible Julian dates of DSA-110 data (2000-01-01 .. 2100-01-01).
_JD_MIN, _JD_MAX = 2_451_544.5, 2_488_069.5


class FileProblem(InputFileError):
    """A subband file cannot be registered (yet).

    Attributes:
        retryable: True when the file may still be being written (truncated,
            incomplete, unreadable); False when waiting cannot help.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.permanent = not retryable


class SubbandFileInfo(BaseModel):
    """What registration needs to know about one valid subband file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    size: int
    mtime_ns: int
    checksum: str | None
    """xxh64 of the whole file (hex), if computed."""
    subband: int
    obs_start: AwareDatetime
    """Observation start: first integration centre minus half an integration (UTC)."""
    group_key: str
    filename_time: AwareDatetime
    dec_deg: float
    """Pointing Dec from ``Header/extra_keywords/phase_center_dec``."""
    n_times: int
    n_baselines: int
    n_freqs: int
    freq_min_hz: float
    freq_max_hz: float


def file_checksum(path: Path) -> str:
    """xxh64 of a file's bytes, as 16 hex digits."""
    digest = xxhash.xxh64()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _values(group: Any, name: str) -> np.ndarray:
    """A dataset's values, flattened; a missing one may still be being written."""
    if name not in group:
        raise FileProblem(f"{group.name}/{name} is missing", retryable=True)
    return np.asarray(group[name][()]).ravel()


def _scalar(group: Any, name: str) -> float:
    values = _values(group, name)
    if values.size == 0:
        raise FileProblem(f"{group.name}/{name} is empty", retryable=True)
    return float(values[0])


def _expected_subband(freqs: np.ndarray) -> int | None:
    """The subband whose channel range holds ``freqs`` (None if none does)."""
    width = instrument.N_CHAN_PER_SUBBAND * instrument.CHANNEL_WIDTH_HZ
    sb = int((instrument.BAND_HIGH_HZ - float(np.max(freqs))) // width)
    if not 0 <= sb < instrument.N_SUBBANDS:
        return None
    top = instrument.BAND_HIGH_HZ - sb * width
    inside = (freqs <= top) & (freqs >= top - width)
    return sb if bool(inside.all()) else None


def _dimensions(header: Any, expected_times: int) -> tuple[int, int, int, int]:
    """Nblts, Nbls, Nfreqs, Npols after checking that the file holds every integration."""
    nblts = int(_scalar(header, "Nblts"))
    nfreq = int(_scalar(header, "Nfreqs"))
    npol = int(_scalar(header, "Npols"))
    nbls = int(_scalar(header, "Nbls"))
    ntimes = int(_scalar(header, "Ntimes"))
    if nbls <= 0 or nfreq <= 0 or npol <= 0:
        raise FileProblem(
            f"unexpected dimensions: Nbls={nbls}, Nfreqs={nfreq}, Npols={npol}", retryable=False
        )
    if ntimes < expected_times or nblts < nbls * expected_times:
        raise FileProblem(
            f"incomplete: {ntimes} of {expected_times} integrations written", retryable=True
        )
    if ntimes != expected_times or nblts != nbls * ntimes:
        raise FileProblem(
            f"unexpected dimensions: Ntimes={ntimes}, Nbls={nbls}, Nblts={nblts} "
            f"(expected {expected_times} integrations)",
            retryable=False,
        )
    return nblts, nbls, nfreq, npol


def _check_datasets(header: Any, data: Any, nblts: int, nfreq: int, npol: int) -> None:
    for name in ("visdata", "flags", "nsamples"):
        if name not in data:
            raise FileProblem(f"Data/{name} is missing", retryable=True)
        shape = tuple(data[name].shape)
        if len(shape) not in (3, 4) or shape[-1] != npol or shape[-2] != nfreq:
            raise FileProblem(
                f"Data/{name} has shape {shape}, expected (Nblts, [1,] {nfreq}, {npol})",
                retryable=False,
            )
        if shape[0] != nblts:
            raise FileProblem(f"Data/{name} has {shape[0]} rows, Nblts={nblts}", retryable=True)
    for name in ("time_array", "integration_time", "ant_1_array", "ant_2_array", "uvw_array"):
        if name not in header or header[name].shape[:1] != (nblts,):
            raise FileProblem(f"Header/{name} does not cover {nblts} rows", retryable=True)


def _check_last_integration(data: Any, nblts: int, nbls: int) -> None:
    """A pre-allocated but unwritten tail reads as zeros: not complete yet."""
    tail = np.asarray(data["visdata"][nblts - nbls : nblts])
    if not np.any(tail):
        raise FileProblem("the last integration holds only zeros (not written yet)", retryable=True)


def _frequencies(header: Any, nfreq: int) -> np.ndarray:
    freqs = _values(header, "freq_array").astype(np.float64)
    if freqs.size != nfreq or not np.all(np.isfinite(freqs)) or np.any(freqs <= 0):
        raise FileProblem(
            f"freq_array holds {freqs.size} value(s) for Nfreqs={nfreq}, or invalid ones",
            retryable=False,
        )
    return freqs


def _observation_start(header: Any, expected_times: int) -> datetime:
    times = _values(header, "time_array").astype(np.float64)
    if np.any(times == 0.0):
        raise FileProblem("time_array still holds zeros (not written yet)", retryable=True)
    if not np.all(np.isfinite(times)) or times.min() < _JD_MIN or times.max() > _JD_MAX:
        raise FileProblem("time_array holds invalid Julian dates", retryable=False)
    unique = np.unique(times)
    if unique.size != expected_times:
        raise FileProblem(
            f"time_array has {unique.size} distinct times, expected {expected_times}",
            retryable=False,
        )
    tints = _values(header, "integration_time").astype(np.float64)
    positive = tints[np.isfinite(tints) & (tints > 0)]
    if positive.size == 0:
        raise FileProblem("integration_time is not written yet", retryable=True)
    tint = float(np.median(positive))
    start = Time(unique[0], format="jd", scale="utc").to_datetime(timezone=UTC)
    return start - timedelta(seconds=tint / 2.0)


def _pointing_dec_deg(header: Any) -> float:
    extra = header.get("extra_keywords")
    if extra is None or "phase_center_dec" not in extra:
        raise FileProblem("extra_keywords/phase_center_dec is missing", retryable=False)
    dec = math.degrees(_scalar(extra, "phase_center_dec"))
    if not math.isfinite(dec) or abs(dec) > 90.0:
        raise FileProblem(f"phase_center_dec is not a declination ({dec} deg)", retryable=False)
    return dec


def _read_file(fh: h5py.File, expected_times: int) -> dict[str, Any]:
    if not isinstance(fh.get("Header"), h5py.Group) or not isinstance(fh.get("Data"), h5py.Group):
        raise FileProblem("not UVH5: no Header/ or Data/ group", retryable=True)
    header, data = fh["Header"], fh["Data"]
    nblts, nbls, nfreq, npol = _dimensions(header, expected_times)
    _check_datasets(header, data, nblts, nfreq, npol)
    _check_last_integration(data, nblts, nbls)
    return {
        "nbls": nbls,
        "nfreq": nfreq,
        "freqs": _frequencies(header, nfreq),
        "start": _observation_start(header, expected_times),
        "dec": _pointing_dec_deg(header),
    }


def _read_header(path: Path, expected_times: int) -> dict[str, Any]:
    try:
        fh = h5py.File(path, "r", locking=False)
    except Exception as exc:  # h5py raises OSError, but corrupt files find other ways
        raise FileProblem(f"cannot open as HDF5 ({exc})", retryable=True) from exc
    try:
        with fh:
            return _read_file(fh, expected_times)
    except FileProblem:
        raise
    except Exception as exc:  # a damaged or half-written file: OSError, RuntimeError, KeyError...
        raise FileProblem(
            f"unreadable header or data ({type(exc).__name__}: {exc})", retryable=True
        ) from exc


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError as exc:
        raise FileProblem("file disappeared", retryable=True) from exc
    except OSError as exc:
        raise FileProblem(f"cannot stat ({exc})", retryable=True) from exc


def _parse_name(path: Path) -> naming.SubbandName:
    try:
        return naming.parse_subband_filename(path.name)
    except NamingError as exc:
        raise FileProblem(str(exc), retryable=False) from exc


def _check_name(
    name: naming.SubbandName, freqs: np.ndarray, start: datetime, tolerance_s: float
) -> None:
    sb = _expected_subband(freqs)
    if sb != name.subband:
        found = "no DSA-110 subband" if sb is None else f"subband {sb}"
        raise FileProblem(
            f"name says sb{name.subband:02d} but the frequencies "
            f"({freqs.min() / 1e6:.3f}-{freqs.max() / 1e6:.3f} MHz) are {found}",
            retryable=False,
        )
    offset = abs((name.timestamp - start).total_seconds())
    if offset > tolerance_s:
        raise FileProblem(
            f"name time {naming.format_timestamp(name.timestamp)} is {offset:.0f} s from the "
            f"header's observation start {start.isoformat()} (tolerance {tolerance_s:.0f} s)",
            retryable=False,
        )


def inspect_subband_file(
    path: Path,
    *,
    expected_times: int = instrument.N_INTEGRATIONS,
    filename_tolerance_s: float = 60.0,
    checksum: bool = True,
) -> SubbandFileInfo:
    """Validate a subband file and return its registration facts.

    Args:
        path: The file.
        expected_times: Integrations a complete file holds.
        filename_tolerance_s: Largest allowed difference between the name's
            timestamp and the observation start from the header.
        checksum: Compute the xxh64 of the whole file.

    Raises:
        FileProblem: with ``retryable`` set as described in the module docstring.
    """
    path = Path(path)
    name = _parse_name(path)
    st = _stat(path)
    head = _read_header(path, expected_times)
    freqs: np.ndarray = head["freqs"]
    start: datetime = head["start"]
    _check_name(name, freqs, start, filename_tolerance_s)
    try:
        digest = file_checksum(path) if checksum else None
    except OSError as exc:
        raise FileProblem(f"cannot read the file ({exc})", retryable=True) from exc
    after = _stat(path)
    if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
        raise FileProblem("file changed while being inspected", retryable=True)
    return SubbandFileInfo(
        path=path,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        checksum=digest,
        subband=name.subband,
        obs_start=start,
        group_key=naming.group_key(start),
        filename_time=name.timestamp,
        dec_deg=float(head["dec"]),
        n_times=expected_times,
        n_baselines=int(head["nbls"]),
        n_freqs=int(head["nfreq"]),
        freq_min_hz=float(freqs.min()),
        freq_max_hz=float(freqs.max()),
    )
