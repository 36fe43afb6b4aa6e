"""PNG quick-look of an image: asinh stretch, sky axes, beam ellipse, colorbar, QA summary.

Large images are reduced to at most :data:`MAX_PREVIEW_PX` pixels a side by keeping,
in each block, the pixel of largest absolute value (point sources and negative
artefacts stay visible). Matplotlib runs with the Agg backend and no pyplot state.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray

from dsa_stream.imaging.fitsio import write_bytes_atomic
from dsa_stream.imaging.options import ExpectedSource, QaReport

MAX_PREVIEW_PX = 1200


def reduce_image(image: NDArray[np.floating], factor: int) -> NDArray[np.float32]:
    """Block-reduce by ``factor`` keeping each block's largest-|value| pixel (NaN-aware)."""
    if factor <= 1:
        return np.asarray(image, dtype=np.float32)
    ny, nx = image.shape
    py, px = (-ny) % factor, (-nx) % factor
    padded = np.pad(np.asarray(image, dtype=np.float32), ((0, py), (0, px)), constant_values=np.nan)
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(blocks.shape[0], blocks.shape[2], -1)
    mag = np.where(np.isfinite(blocks), np.abs(blocks), -1.0)
    idx = np.argmax(mag, axis=2)
    out = np.take_along_axis(blocks, idx[..., None], axis=2)[..., 0]
    return np.asarray(out, dtype=np.float32)


def reduced_wcs(wcs: WCS, factor: int) -> WCS:
    """The WCS of an image block-reduced by ``factor`` (pixel centres at block centres)."""
    if factor <= 1:
        return wcs
    out = wcs.deepcopy()
    out.wcs.crpix = (np.asarray(wcs.wcs.crpix) - 0.5) / factor + 0.5
    out.wcs.cdelt = np.asarray(wcs.wcs.get_cdelt()) * factor
    return out


def _norm(data: NDArray[np.floating], rms: float) -> object:
    from astropy.visualization import AsinhStretch, ImageNormalize

    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return ImageNormalize(vmin=0.0, vmax=1.0)
    vmin = max(float(np.percentile(finite, 0.5)), -5.0 * rms) if rms > 0 else None
    vmax = float(np.percentile(finite, 99.95))
    vmax = max(vmax, float(finite.max()) * 0.3)
    if vmin is None or vmin >= vmax:
        vmin = float(finite.min())
    # asinh turns linear at ~a * (vmax - vmin): put that near a few sigma
    span = max(vmax - vmin, 1e-12)
    a = min(0.5, max(1e-3, 5.0 * rms / span)) if rms > 0 else 0.05
    return ImageNormalize(vmin=vmin, vmax=vmax, stretch=AsinhStretch(a=a))


def render_preview(
    path: Path,
    image: NDArray[np.floating],
    wcs: WCS,
    *,
    title: str,
    qa: QaReport,
    cell_arcsec: float,
    pb: NDArray[np.floating] | None = None,
    pb_cutoff: float | None = None,
    expected: Sequence[ExpectedSource] = (),
) -> Path:
    """Write the PNG preview of ``image`` to ``path`` (atomically) and return ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse

    factor = max(1, math.ceil(max(image.shape) / MAX_PREVIEW_PX))
    data = reduce_image(image, factor)
    w = reduced_wcs(wcs, factor)
    fig = Figure(figsize=(8.0, 7.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1, projection=w)
    shown = ax.imshow(data, origin="lower", cmap="inferno", norm=_norm(data, qa.rms_jy))
    cbar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("Jy/beam")
    if pb is not None and pb_cutoff is not None:
        small = pb[::factor, ::factor] if factor > 1 else pb
        ax.contour(np.nan_to_num(small), levels=[pb_cutoff], colors="cyan", linewidths=0.6)
    for src in expected:
        x, y = w.world_to_pixel_values(src.ra_deg, src.dec_deg)
        if np.isfinite(x) and np.isfinite(y):
            ax.plot(x, y, marker="o", mfc="none", mec="lime", ms=9, mew=0.7)
    cell = cell_arcsec * factor
    bmaj, bmin = qa.beam.bmaj_arcsec / cell, qa.beam.bmin_arcsec / cell
    margin = max(4.0, 1.2 * bmaj)
    ax.add_patch(
        Ellipse(
            (margin, margin),
            width=max(bmin, 1.0),
            height=max(bmaj, 1.0),
            angle=qa.beam.bpa_deg,
            facecolor="white",
            edgecolor="black",
            lw=0.8,
        )
    )
    ax.set_xlabel("RA (ICRS)")
    ax.set_ylabel("Dec (ICRS)")
    verdict = "PASS" if qa.passed else "FAIL: " + ", ".join(qa.failures())
    ax.set_title(
        f"{title}\nrms {qa.rms_jy * 1e3:.2f} mJy/beam, peak {qa.peak_jy:.3g} Jy/beam, "
        f'DR {qa.dynamic_range:.0f}, beam {qa.beam.bmaj_arcsec:.1f}"x'
        f'{qa.beam.bmin_arcsec:.1f}" PA {qa.beam.bpa_deg:.0f}, QA {verdict}',
        fontsize=8,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes_atomic(Path(path), buf.getvalue())
    return Path(path)
