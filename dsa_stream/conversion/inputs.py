"""Read and check the subband files of one group before converting them.

The checks run on the HDF5 headers only (h5py, no visibilities): every file exists,
is HDF5 with the DSA-110 UVH5 header, and all files share the time axis (bit-identical
``time_array``), the pointing Dec, the baselines and antennas, the polarizations and
the channel layout, with distinct subbands. The subband number comes from the
frequencies (sb00 is the top of the band); a file name's ``sbNN`` must agree with it.
Every failure is an :class:`~dsa_stream.exceptions.InputFileError` naming the file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import NDArray

from dsa_stream import instrument, naming
from dsa_stream.exceptions import InputFileError, NamingError

logger = logging.getLogger(__name__)

#: Header datasets a DSA-110 subband file must have.
REQUIRED_HEADER = (
    "time_array",
    "freq_array",
    "channel_width",
    "polarization_array",
    "ant_1_array",
    "ant_2_array",
    "antenna_numbers",
    "antenna_names",
    "antenna_positions",
    "integration_time",
    "latitude",
    "longitude",
    "altitude",
    "Nblts",
    "Ntimes",
    "Nbls",
)
#: Largest allowed difference of the pointing Dec between files (rad; ~0.02 arcsec).
DEC_TOLERANCE_RAD = 1e-7


@dataclass(frozen=True)
class SubbandHeader:
    """What the conversion needs from one file's header."""

    path: Path
    size_bytes: int
    subband: int
    """Subband number from the frequencies (0 = highest)."""
    freqs_hz: NDArray[np.float64]
    """Channel centres in file order."""
    channel_width_hz: float
    """Positive channel width."""
    time_jd: NDArray[np.float64]
    """(Nblts,) time of each row."""
    ant1: NDArray[np.int64]
    ant2: NDArray[np.int64]
    pols: NDArray[np.int64]
    dec_rad: float
    """``extra_keywords/phase_center_dec``: apparent pointing Dec."""
    antenna_numbers: NDArray[np.int64]
    antenna_positions: NDArray[np.float64]
    integration_s: NDArray[np.float64]
    site: tuple[float, float, float]
    """latitude (deg), longitude (deg), altitude (m)."""
    data_shape: tuple[int, ...]

    @property
    def nfreqs(self) -> int:
        """Channels in the file."""
        return int(self.freqs_hz.size)


@dataclass(frozen=True)
class GroupInputs:
    """The checked headers of one group, sorted by subband number (descending frequency)."""

    headers: tuple[SubbandHeader, ...]
    expected_subbands: int

    @property
    def first(self) -> SubbandHeader:
        """Any header (they agree on everything but the frequencies)."""
        return self.headers[0]

    @property
    def subbands(self) -> tuple[int, ...]:
        """Subband numbers present."""
        return tuple(h.subband for h in self.headers)

    @property
    def missing(self) -> tuple[int, ...]:
        """Subband numbers absent from the group."""
        present = set(self.subbands)
        return tuple(sb for sb in range(self.expected_subbands) if sb not in present)

    @property
    def nchan_subband(self) -> int:
        """Channels per subband."""
        return self.first.nfreqs

    @property
    def channel_width_hz(self) -> float:
        """Positive channel width (Hz)."""
        return self.first.channel_width_hz

    def full_band_hz(self) -> NDArray[np.float64]:
        """Ascending channel centres of all ``expected_subbands`` subbands (Hz).

        Missing subbands get the frequencies their place in the layout implies.
        """
        h = self.first
        nchan, width = h.nfreqs, h.channel_width_hz
        top = float(np.max(h.freqs_hz)) + h.subband * nchan * width  # top channel of sb00
        desc = top - np.arange(self.expected_subbands * nchan) * width
        return desc[::-1].copy()

    def times_jd(self) -> NDArray[np.float64]:
        """Distinct integration centres (JD), ascending."""
        return np.unique(self.first.time_jd)


def _scalar(h: h5py.Group, name: str) -> object:
    value = h[name][()]
    return value.item() if isinstance(value, np.ndarray) and value.size == 1 else value


def _open_header(path: Path) -> SubbandHeader:
    """Read one file's header; raise InputFileError for anything unreadable or missing."""
    if not path.exists():
        raise InputFileError(f"{path}: file does not exist")
    if not path.is_file():
        raise InputFileError(f"{path}: not a regular file")
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with fh:
        if "Header" not in fh or "Data" not in fh:
            raise InputFileError(f"{path}: not UVH5 (no Header/ and Data/ groups)")
        hdr = fh["Header"]
        missing = [k for k in REQUIRED_HEADER if k not in hdr]
        if missing:
            raise InputFileError(f"{path}: UVH5 header lacks {', '.join(missing)}")
        if "extra_keywords" not in hdr or "phase_center_dec" not in hdr["extra_keywords"]:
            raise InputFileError(
                f"{path}: no Header/extra_keywords/phase_center_dec (the pointing Dec)"
            )
        if "visdata" not in fh["Data"]:
            raise InputFileError(f"{path}: no Data/visdata")
        freqs = np.asarray(hdr["freq_array"][()], dtype=np.float64).ravel()
        width = np.asarray(hdr["channel_width"][()], dtype=np.float64).ravel()
        return SubbandHeader(
            path=path,
            size_bytes=path.stat().st_size,
            subband=-1,
            freqs_hz=freqs,
            channel_width_hz=float(abs(width[0])) if width.size else math.nan,
            time_jd=np.asarray(hdr["time_array"][()], dtype=np.float64),
            ant1=np.asarray(hdr["ant_1_array"][()], dtype=np.int64),
            ant2=np.asarray(hdr["ant_2_array"][()], dtype=np.int64),
            pols=np.asarray(hdr["polarization_array"][()], dtype=np.int64).ravel(),
            dec_rad=float(_scalar(hdr["extra_keywords"], "phase_center_dec")),  # type: ignore[arg-type]
            antenna_numbers=np.asarray(hdr["antenna_numbers"][()], dtype=np.int64),
            antenna_positions=np.asarray(hdr["antenna_positions"][()], dtype=np.float64),
            integration_s=np.asarray(hdr["integration_time"][()], dtype=np.float64),
            site=(
                float(_scalar(hdr, "latitude")),  # type: ignore[arg-type]
                float(_scalar(hdr, "longitude")),  # type: ignore[arg-type]
                float(_scalar(hdr, "altitude")),  # type: ignore[arg-type]
            ),
            data_shape=tuple(fh["Data/visdata"].shape),
        )


def subband_from_frequencies(freqs_hz: NDArray[np.float64], path: Path) -> int:
    """Subband number (0 = top of the DSA-110 band) of a file's channels."""
    sb_width = instrument.N_CHAN_PER_SUBBAND * instrument.CHANNEL_WIDTH_HZ
    centre = float(np.mean(freqs_hz))
    pos = (instrument.BAND_HIGH_HZ - centre) / sb_width - 0.5
    sb = round(pos)
    if not 0 <= sb < instrument.N_SUBBANDS or abs(pos - sb) > 0.05:
        raise InputFileError(
            f"{path}: channels centred at {centre / 1e6:.4f} MHz are not a DSA-110 subband"
        )
    return int(sb)


def _check_own(h: SubbandHeader) -> SubbandHeader:
    """Checks of one file on its own; returns the header with its subband number."""
    p = h.path
    nblts = h.time_jd.size
    if h.freqs_hz.size == 0 or not np.all(np.isfinite(h.freqs_hz)):
        raise InputFileError(f"{p}: empty or non-finite freq_array")
    if not h.channel_width_hz > 0:
        raise InputFileError(f"{p}: channel_width is zero or missing")
    if h.freqs_hz.size > 1:
        steps = np.abs(np.diff(h.freqs_hz))
        if not np.allclose(steps, h.channel_width_hz, rtol=1e-6):
            raise InputFileError(
                f"{p}: channels are not contiguous at the channel width "
                f"({h.channel_width_hz:.1f} Hz)"
            )
        if not (np.all(np.diff(h.freqs_hz) > 0) or np.all(np.diff(h.freqs_hz) < 0)):
            raise InputFileError(f"{p}: frequencies are not monotonic")
    expected_shape = (nblts, 1, h.nfreqs, h.pols.size)
    if h.data_shape not in (expected_shape, (nblts, h.nfreqs, h.pols.size)):
        raise InputFileError(
            f"{p}: Data/visdata has shape {h.data_shape}, the header implies "
            f"{expected_shape} (truncated or inconsistent file)"
        )
    if h.ant1.size != nblts or h.ant2.size != nblts:
        raise InputFileError(f"{p}: ant_1_array/ant_2_array do not have Nblts rows")
    if nblts == 0:
        raise InputFileError(f"{p}: no integrations (Nblts = 0)")
    if not -math.pi / 2 <= h.dec_rad <= math.pi / 2:
        raise InputFileError(f"{p}: phase_center_dec {h.dec_rad} rad is not a declination")
    sb = subband_from_frequencies(h.freqs_hz, p)
    try:
        named = naming.parse_subband_filename(p.name).subband
    except NamingError:
        named = None
    if named is not None and named != sb:
        raise InputFileError(
            f"{p}: file name says sb{named:02d} but its frequencies are subband sb{sb:02d}"
        )
    return SubbandHeader(**{**h.__dict__, "subband": sb})


def _check_rows(h: SubbandHeader) -> None:
    """Rows must be time-major with the same baselines in every integration."""
    times, counts = np.unique(h.time_jd, return_counts=True)
    nbl = h.ant1.size // times.size
    if not np.all(counts == nbl) or np.any(np.diff(h.time_jd) < 0):
        raise InputFileError(f"{h.path}: rows are not time-major with equal baselines per time")
    a1, a2 = h.ant1.reshape(times.size, nbl), h.ant2.reshape(times.size, nbl)
    if not (np.all(a1 == a1[0]) and np.all(a2 == a2[0])):
        raise InputFileError(f"{h.path}: the baselines change between integrations")
    if np.any(a1[0] > a2[0]):
        raise InputFileError(f"{h.path}: baselines with ant_1 > ant_2")
    if np.unique(a1[0] * 100_000 + a2[0]).size != nbl:
        raise InputFileError(f"{h.path}: repeated baselines within an integration")


def _check_same(ref: SubbandHeader, h: SubbandHeader) -> None:
    """Everything but the frequencies must agree between the files of a group."""
    p, r = h.path, ref.path.name
    if h.time_jd.shape != ref.time_jd.shape or not np.array_equal(h.time_jd, ref.time_jd):
        raise InputFileError(f"{p}: time_array differs from {r} (not the same observation)")
    if abs(h.dec_rad - ref.dec_rad) > DEC_TOLERANCE_RAD:
        raise InputFileError(
            f"{p}: pointing Dec {math.degrees(h.dec_rad):.6f} deg differs from {r} "
            f"({math.degrees(ref.dec_rad):.6f} deg)"
        )
    if not (np.array_equal(h.ant1, ref.ant1) and np.array_equal(h.ant2, ref.ant2)):
        raise InputFileError(f"{p}: baselines (ant_1/ant_2) differ from {r}")
    if not (
        np.array_equal(h.antenna_numbers, ref.antenna_numbers)
        and h.antenna_positions.shape == ref.antenna_positions.shape
        and np.allclose(h.antenna_positions, ref.antenna_positions, atol=1e-3)
    ):
        raise InputFileError(f"{p}: antenna numbers or positions differ from {r}")
    if not np.array_equal(h.pols, ref.pols):
        raise InputFileError(f"{p}: polarizations {h.pols.tolist()} differ from {r}")
    if h.nfreqs != ref.nfreqs or not math.isclose(
        h.channel_width_hz, ref.channel_width_hz, rel_tol=1e-9
    ):
        raise InputFileError(f"{p}: channel count or width differs from {r}")
    if not np.allclose(h.integration_s, ref.integration_s, rtol=1e-9):
        raise InputFileError(f"{p}: integration_time differs from {r}")
    if not np.allclose(h.site, ref.site, atol=1e-9):
        raise InputFileError(f"{p}: telescope location differs from {r}")


def _check_layout(headers: Sequence[SubbandHeader]) -> None:
    """Present subbands must sit exactly where the channel layout puts them."""
    ref = headers[0]
    width, nchan = ref.channel_width_hz, ref.nfreqs
    top = float(np.max(ref.freqs_hz)) + ref.subband * nchan * width
    for h in headers[1:]:
        expected = top - h.subband * nchan * width
        if abs(float(np.max(h.freqs_hz)) - expected) > 1e-3 * width:
            raise InputFileError(
                f"{h.path}: subband sb{h.subband:02d} is not contiguous with "
                f"sb{ref.subband:02d} at {width:.1f} Hz channels"
            )


def read_group(
    files: Sequence[str | Path], expected_subbands: int = instrument.N_SUBBANDS
) -> GroupInputs:
    """Read and check the headers of one group's files.

    Args:
        files: Subband files of one observation (any order, at least one).
        expected_subbands: Subbands of a complete group.

    Returns:
        The headers sorted by subband number.

    Raises:
        InputFileError: for any file that is missing, unreadable, not DSA-110 UVH5,
            or inconsistent with the others.
    """
    if not files:
        raise InputFileError("no input files given")
    paths = [Path(f) for f in files]
    if len(set(p.resolve() for p in paths)) != len(paths):
        raise InputFileError("the same file is given twice")
    headers = [_check_own(_open_header(p)) for p in paths]
    headers.sort(key=lambda h: h.subband)
    seen: dict[int, Path] = {}
    for h in headers:
        if h.subband in seen:
            raise InputFileError(
                f"{h.path} and {seen[h.subband]} are both subband sb{h.subband:02d}"
            )
        if h.subband >= expected_subbands:
            raise InputFileError(
                f"{h.path}: subband sb{h.subband:02d} is outside the expected "
                f"{expected_subbands} subbands"
            )
        seen[h.subband] = h.path
    _check_rows(headers[0])
    for h in headers[1:]:
        _check_same(headers[0], h)
    _check_layout(headers)
    logger.debug("group of %d subband file(s) checked", len(headers))
    return GroupInputs(headers=tuple(headers), expected_subbands=expected_subbands)
