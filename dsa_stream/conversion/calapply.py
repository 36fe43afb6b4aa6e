"""Apply CASA calibration tables (B and G Jones) while converting.

Tables are read with python-casacore. For each integration the solution nearest in
time is used (per channel for a bandpass, one value for a gain), as CASA ``applycal``
with ``interp='nearest'`` does, and the data are corrected in CASA's convention

    V_corrected(a1, a2, p) = V(a1, a2, p) / (g_a1,f1(p) conj(g_a2,f2(p)))

with f1/f2 the feeds of correlation p (XX: X, X; YY: Y, Y; XY: X, Y; YX: Y, X).
Flagged solutions, and antennas without a solution, flag the data. Weights are not
changed (``calwt=False``). A table must hold one spectral window whose channels are
the MS channels before averaging (or a single channel for G); antennas are matched by
name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa_stream.conversion.options import AppliedTable
from dsa_stream.exceptions import ConversionError

logger = logging.getLogger(__name__)

#: Feed indices (first antenna, second antenna) of each correlation code.
FEEDS_OF_POL = {-5: (0, 0), -6: (1, 1), -7: (0, 1), -8: (1, 0), 1: (0, 0)}
_FREQ_TOLERANCE_HZ = 1.0


@dataclass(frozen=True)
class CalTable:
    """One table's solutions on our antenna numbering."""

    info: AppliedTable
    times_s: NDArray[np.float64]
    """(ntimes,) distinct solution times (MJD seconds)."""
    gains: NDArray[np.complex64]
    """(ntimes, nant, nchan_or_1, nfeed) solutions; missing ones are 1 and flagged."""
    flags: NDArray[np.bool_]


def _table_type(tb: tables.table, path: Path) -> str:
    kw = tb.getkeywords()
    viscal = str(kw.get("VisCal", ""))
    if kw.get("ParType", "Complex") != "Complex" or "CPARAM" not in tb.colnames():
        raise ConversionError(
            f"{path}: only complex (B/G Jones) tables can be applied, got {viscal!r}"
        )
    if viscal and viscal.split()[0] not in ("B", "G", "T"):
        raise ConversionError(f"{path}: table type {viscal!r} is not B, G or T Jones")
    return viscal or "unknown"


def _channel_map(
    path: Path, table_freqs: NDArray[np.float64], ms_freqs: NDArray[np.float64]
) -> int:
    """Check the table's channels against the MS channels; return its channel count."""
    if table_freqs.size == 1:
        return 1
    if table_freqs.size != ms_freqs.size or not np.allclose(
        table_freqs, ms_freqs, atol=_FREQ_TOLERANCE_HZ, rtol=0.0
    ):
        raise ConversionError(
            f"{path}: its {table_freqs.size} channels "
            f"({table_freqs.min() / 1e6:.3f}-{table_freqs.max() / 1e6:.3f} MHz) do not match "
            f"the {ms_freqs.size} channels of this group"
        )
    return int(table_freqs.size)


def read_caltable(
    path: Path, antenna_names: Sequence[str], ms_freqs_hz: NDArray[np.float64]
) -> CalTable:
    """Read one B/G table onto our antenna numbering (index = position in antenna_names)."""
    if not (path / "table.dat").exists():
        raise ConversionError(f"{path}: not a CASA table")
    with tables.table(str(path), ack=False) as tb:
        viscal = _table_type(tb, path)
        if tb.nrows() == 0:
            raise ConversionError(f"{path}: the table has no solutions")
        spw = tb.getcol("SPECTRAL_WINDOW_ID")
        if np.any(spw != spw[0]):
            raise ConversionError(f"{path}: solutions for several spectral windows")
        cparam = tb.getcol("CPARAM")  # (nrow, nchan, nfeed)
        cflag = tb.getcol("FLAG")
        ant = tb.getcol("ANTENNA1")
        time_s = tb.getcol("TIME")
    with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as sw:
        table_freqs = np.asarray(sw.getcell("CHAN_FREQ", int(spw[0])), dtype=np.float64)
    with tables.table(f"{path}/ANTENNA", ack=False) as at:
        table_names = [str(n) for n in at.getcol("NAME")]
    nchan = _channel_map(path, table_freqs, ms_freqs_hz)
    if cparam.shape[1] != nchan:
        raise ConversionError(f"{path}: CPARAM has {cparam.shape[1]} channels, expected {nchan}")
    index = {name: k for k, name in enumerate(antenna_names)}
    times = np.unique(time_s)
    nfeed = cparam.shape[2]
    gains = np.ones((times.size, len(antenna_names), nchan, nfeed), dtype=np.complex64)
    flags = np.ones(gains.shape, dtype=bool)
    t_idx = np.searchsorted(times, time_s)
    for row in range(ant.size):
        k = index.get(table_names[ant[row]]) if 0 <= ant[row] < len(table_names) else None
        if k is None:
            continue
        gains[t_idx[row], k] = cparam[row]
        flags[t_idx[row], k] = cflag[row] | ~np.isfinite(cparam[row]) | (cparam[row] == 0)
    info = AppliedTable(
        path=path.resolve(),
        type=viscal,
        n_solutions=int(ant.size),
        solution_times_mjd=tuple(float(t) / 86400.0 for t in times),
    )
    logger.info("calibration table %s (%s): %d solution rows", path, viscal, ant.size)
    return CalTable(info=info, times_s=times, gains=gains, flags=flags)


class GainApplier:
    """Applies a list of tables to blocks of rows (MS convention data)."""

    def __init__(self, cal_tables: Sequence[CalTable], pols: Sequence[int]) -> None:
        """Combine tables; ``pols`` are the correlation codes in the order of the data."""
        if not cal_tables:
            raise ValueError("no tables")
        self.tables = tuple(cal_tables)
        unknown = [p for p in pols if p not in FEEDS_OF_POL]
        if unknown:
            raise ConversionError(f"cannot apply gains to correlations {unknown}")
        self.feed1 = [FEEDS_OF_POL[p][0] for p in pols]
        self.feed2 = [FEEDS_OF_POL[p][1] for p in pols]

    def _combined(self, time_s: float) -> tuple[NDArray[np.complex64], NDArray[np.bool_]]:
        """Product of every table's nearest solution, with flags.

        Shape (nant, nchan_or_1, npol, side): side 0 for the antenna as ANTENNA1, 1 as
        ANTENNA2.
        """
        g_out: NDArray[np.complex64] | None = None
        f_out: NDArray[np.bool_] | None = None
        for t in self.tables:
            k = int(np.argmin(np.abs(t.times_s - time_s)))
            g, f = t.gains[k], t.flags[k]  # (nant, nchan, nfeed)
            last = g.shape[2] - 1
            f1 = [min(x, last) for x in self.feed1]
            f2 = [min(x, last) for x in self.feed2]
            g_t = np.stack([g[:, :, f1], g[:, :, f2]], axis=-1)
            fl_t = np.stack([f[:, :, f1], f[:, :, f2]], axis=-1)
            g_out = g_t if g_out is None else g_out * g_t
            f_out = fl_t if f_out is None else (f_out | fl_t)
        assert g_out is not None and f_out is not None
        return g_out, f_out

    def apply(
        self,
        data: NDArray[np.complex64],
        flags: NDArray[np.bool_],
        ant1: NDArray[np.int64],
        ant2: NDArray[np.int64],
        time_s: NDArray[np.float64],
    ) -> None:
        """Correct ``data`` in place and OR the solution flags into ``flags``."""
        for t in np.unique(time_s):
            rows = np.flatnonzero(time_s == t)
            g, bad = self._combined(float(t))
            a1, a2 = ant1[rows], ant2[rows]
            denom = g[a1, :, :, 0] * np.conj(g[a2, :, :, 1])
            good = ~(bad[a1, :, :, 0] | bad[a2, :, :, 1]) & (denom != 0)
            inv = np.where(good, 1.0 / np.where(good, denom, 1.0), 0.0).astype(np.complex64)
            data[rows] *= inv
            flags[rows] |= ~good
