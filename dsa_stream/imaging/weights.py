"""Imaging weights summed per integration and channel, W(t, nu), as the imagers form them.

The MFS image is the weighted mean of all visibilities, so the primary beam that
corrects it must weight integrations and channels the same way
(:mod:`dsa_stream.imaging.primary_beam`). This module recomputes the imagers'
weights from the MS (python-casacore, parent process):

* a visibility is used when it is a cross-correlation, unflagged in every
  polarization, not in a flagged row, and inside the uv range;
* natural weight: the sum of its polarizations' WEIGHT;
* density weighting (uniform, Briggs) follows CASA's ``VisImagingWeight`` and
  WSClean: natural weights are gridded (with their conjugates) on a uv grid of the
  image's size with cells of ``1 / (size x cell)`` wavelengths; uniform divides by
  the cell's sum ``D``; Briggs uses ``w / (1 + f2 D)`` with
  ``f2 = (5 x 10**-robust)**2 / (sum D**2 / sum D)``.

The result only sets the relative weight of integrations and channels (the spatial
pattern of the weights is the PSF's business), so the small differences between
the imagers' grids do not matter here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa_stream.imaging.options import ImagingOptions
from dsa_stream.instrument import C_M_S

logger = logging.getLogger(__name__)

#: Rows read per block (bounded memory at full size: ~8k rows x 768 channels).
ROWS_PER_BLOCK = 8192


@dataclass(frozen=True)
class _Block:
    time_idx: NDArray[np.int64]
    uvw: NDArray[np.float64]
    ok: NDArray[np.bool_]
    """(nrow, nchan) visibility used."""
    weight: NDArray[np.float64]
    """(nrow,) natural weight of the Stokes I visibility."""


def _blocks(
    ms_path: Path, times_mjd: NDArray[np.float64], options: ImagingOptions, freqs: NDArray
) -> Iterator[_Block]:
    lo = options.uv_min_lambda or 0.0
    hi = options.uv_max_lambda or math.inf
    with tables.table(str(ms_path), ack=False) as ms:
        n = ms.nrows()
        for r0 in range(0, n, ROWS_PER_BLOCK):
            nr = min(ROWS_PER_BLOCK, n - r0)
            a1 = ms.getcol("ANTENNA1", r0, nr)
            a2 = ms.getcol("ANTENNA2", r0, nr)
            flag = np.asarray(ms.getcol("FLAG", r0, nr)).any(axis=2)
            flag |= np.asarray(ms.getcol("FLAG_ROW", r0, nr))[:, None]
            flag |= (a1 == a2)[:, None]
            uvw = np.asarray(ms.getcol("UVW", r0, nr), dtype=np.float64)
            uv = np.hypot(uvw[:, 0], uvw[:, 1])[:, None] * freqs[None, :] / C_M_S
            flag |= (uv < lo) | (uv > hi)
            weight = np.asarray(ms.getcol("WEIGHT", r0, nr), dtype=np.float64).sum(axis=1)
            t = np.asarray(ms.getcol("TIME", r0, nr)) / 86400.0
            idx = np.clip(np.searchsorted(times_mjd, t - 1e-9), 0, times_mjd.size - 1)
            yield _Block(time_idx=idx, uvw=uvw, ok=~flag & (weight[:, None] > 0), weight=weight)


def _cells(block: _Block, freqs: NDArray[np.float64], scale: float, n: int) -> NDArray[np.int32]:
    """Flat uv-grid cell index of every used (row, channel); -1 where unused or off the grid."""
    f = (freqs / C_M_S * scale).astype(np.float32)[None, :]
    iu = np.floor(block.uvw[:, 0:1].astype(np.float32) * f + n // 2).astype(np.int32)
    iv = np.floor(block.uvw[:, 1:2].astype(np.float32) * f + n // 2).astype(np.int32)
    inside = (iu >= 0) & (iu < n) & (iv >= 0) & (iv < n) & block.ok
    return np.where(inside, iv * n + iu, -1).astype(np.int32)


def _density_grid(blocks: list[tuple[_Block, NDArray[np.int32]]], n: int) -> NDArray[np.float64]:
    """Gridded natural weights including each visibility's conjugate (Hermitian mirror)."""
    grid = np.zeros(n * n)
    for block, cells in blocks:
        keep = cells >= 0
        w = np.broadcast_to(block.weight[:, None], cells.shape)[keep]
        grid += np.bincount(cells[keep], weights=w, minlength=n * n)
    square = grid.reshape(n, n)
    # floor(-x + n/2) = n - 1 - floor(x + n/2) for non-integer x: the conjugate's cell.
    return np.asarray(square + square[::-1, ::-1]).ravel()


def weight_sums(
    ms_path: Path,
    times_mjd: NDArray[np.float64],
    freqs_hz: NDArray[np.float64],
    options: ImagingOptions,
) -> NDArray[np.float64]:
    """W(t, nu): summed imaging weights per integration and channel, (n_times, n_chan).

    ``options.pb_weighting`` chooses ``imaging`` (the weighting of ``options``),
    ``natural`` or ``flat`` (all ones).
    """
    nt, nc = times_mjd.size, freqs_hz.size
    if options.pb_weighting == "flat":
        return np.ones((nt, nc))
    density = options.pb_weighting == "imaging" and options.weighting != "natural"
    n = options.size_px
    scale = n * math.radians(options.cell_arcsec / 3600.0)
    sums = np.zeros((nt, nc))
    blocks = list(_blocks(ms_path, times_mjd, options, freqs_hz))
    if not density:
        for block in blocks:
            w = np.where(block.ok, block.weight[:, None], 0.0)
            for t in np.unique(block.time_idx):
                sums[t] += w[block.time_idx == t].sum(axis=0)
    else:
        cached = [(block, _cells(block, freqs_hz, scale, n)) for block in blocks]
        grid = _density_grid(cached, n)
        f2 = 1.0
        if options.weighting == "briggs":
            f2 = (5.0 * 10.0 ** (-options.robust)) ** 2 / (np.sum(grid**2) / np.sum(grid))
        for block, cells in cached:
            d = np.where(cells >= 0, grid[np.maximum(cells, 0)], 0.0)
            w = np.where(cells >= 0, block.weight[:, None], 0.0)
            if options.weighting == "uniform":
                w = np.divide(w, d, out=np.zeros_like(w), where=d > 0)
            else:
                w = w / (1.0 + f2 * d)
            for t in np.unique(block.time_idx):
                sums[t] += w[block.time_idx == t].sum(axis=0)
    if not np.any(sums > 0):
        raise ValueError(f"{ms_path}: no unflagged cross-correlation data to image")
    logger.debug("imaging weights per integration/channel computed (%s)", options.pb_weighting)
    return sums
