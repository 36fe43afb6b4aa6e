"""PNG preview of a mosaic: block-averaged, asinh stretch, RA/Dec axes, colorbar.

Uses matplotlib's object API with the Agg canvas (no pyplot global state), so it is
safe in worker threads and needs no display.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from astropy.wcs import WCS


def block_average(image: np.ndarray, factor: int, chunk_rows: int = 64) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks, ignoring NaN (NaN where a block is empty).

    Works through ``chunk_rows`` output rows at a time to bound the temporary memory.
    """
    if factor <= 1:
        return image
    ny, nx = (s // factor for s in image.shape)
    out = np.empty((ny, nx), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        for r in range(0, ny, chunk_rows):
            r1 = min(r + chunk_rows, ny)
            part = image[r * factor : r1 * factor, : nx * factor]
            blocks = part.reshape(r1 - r, factor, nx, factor)
            out[r:r1] = np.nanmean(blocks, axis=(1, 3))
    return out


def _downsampled_wcs(wcs: WCS, factor: int) -> WCS:
    out = wcs.deepcopy()
    if factor > 1:
        out.wcs.cdelt = wcs.wcs.cdelt * factor
        out.wcs.crpix = (wcs.wcs.crpix - 0.5) / factor + 0.5
        out.wcs.set()
    return out


def write_preview(
    path: Path,
    mosaic: np.ndarray,
    wcs: WCS,
    noise_jy: float,
    title: str,
    max_px: int = 2400,
) -> None:
    """Write a PNG of the mosaic to ``path`` (the caller makes it atomic).

    The stretch is asinh with a linear part of 3 x ``noise_jy`` around zero, from
    -5 x noise to the 99.95th percentile (at least 20 x noise), so noise and bright
    sources are both visible.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import AsinhNorm
    from matplotlib.figure import Figure

    factor = max(1, math.ceil(max(mosaic.shape) / max_px))
    small = block_average(mosaic, factor)
    finite = small[np.isfinite(small)]
    top = float(np.percentile(finite, 99.95)) if finite.size else 1.0
    noise = noise_jy if noise_jy > 0 and math.isfinite(noise_jy) else max(abs(top), 1e-6) / 100
    norm = AsinhNorm(linear_width=3 * noise, vmin=-5 * noise, vmax=max(top, 20 * noise))
    ny, nx = small.shape
    width = 12.0
    height = min(12.0, max(3.0, width * ny / nx + 1.2))
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection=_downsampled_wcs(wcs, factor))
    shown = ax.imshow(small, origin="lower", cmap="inferno", norm=norm, interpolation="nearest")
    ax.set_facecolor("0.85")
    ax.coords[0].set_axislabel("RA (ICRS)")
    ax.coords[1].set_axislabel("Dec (ICRS)")
    ax.coords[0].set_major_formatter("hh:mm")
    ax.coords[1].set_major_formatter("dd:mm")
    ax.coords.grid(color="white", alpha=0.25, linestyle=":")
    ax.set_title(title, fontsize=10)
    cbar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    cbar.set_label("Jy/beam")
    fig.savefig(path, format="png", bbox_inches="tight")
