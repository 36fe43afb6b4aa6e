"""One restoring beam for both imagers: fitted to the PSF main lobe, applied by us.

The DSA-110 PSF is a narrow spike (outrigger baselines) on a broad plateau (the
T-shaped core), so the imagers' own Gaussian fits disagree and can fail: WSClean fits
inside a box of ten *theoretical* beams, which is far smaller than the real main lobe
when a uv cut removes the outriggers (fits of 95" x 0.4" were seen) and takes in part
of the plateau otherwise. Here the beam is fitted the classical way, to the main lobe
only: the pixels of the PSF above half its peak that are connected to the peak. For a
Gaussian ``ln(psf) = -(a x^2 + b x y + c y^2)`` is linear in (a, b, c) and is solved by
least squares (weights psf^2), with the peak fixed at the PSF maximum.

The restored image is then ``residual + model (*) G``, with the clean components
(model, Jy/pixel) convolved with the unit-peak Gaussian ``G`` of that beam, so a point
source's restored peak equals its clean flux whatever the backend.

Orientation: BPA is measured from north through east; with RA increasing to the left
(CDELT1 < 0), east is towards -x on the pixel grid.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, signal

from dsa_stream.exceptions import ImagingError
from dsa_stream.imaging.options import RestoringBeam

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Largest half-size of the PSF window searched for the main lobe (pixels).
MAX_WINDOW = 400


def fit_psf_beam(
    psf: NDArray[np.floating], cell_arcsec: float, level: float = 0.5
) -> RestoringBeam:
    """Gaussian fit to the main lobe of ``psf`` (the region above ``level`` x peak).

    Args:
        psf: 2-D PSF image (peak near the centre).
        cell_arcsec: Pixel size (arcsec; square pixels, RA axis reversed).
        level: Fraction of the peak that bounds the fitted main lobe.

    Raises:
        ImagingError: the PSF has no positive peak or the lobe is not elliptical.
    """
    data = np.nan_to_num(np.asarray(psf, dtype=np.float64))
    cy, cx = (n // 2 for n in data.shape)
    half = min(MAX_WINDOW, cy, cx)
    win = data[cy - half : cy + half + 1, cx - half : cx + half + 1]
    py, px = np.unravel_index(int(np.argmax(win)), win.shape)
    peak = float(win[py, px])
    if not peak > 0:
        raise ImagingError("the PSF has no positive peak")
    labels, _ = ndimage.label(win >= level * peak)
    lobe = labels == labels[py, px]
    ys, xs = np.nonzero(lobe)
    if ys.size < 4:
        raise ImagingError(f"the PSF main lobe spans {ys.size} pixels: the cell is too large")
    x = (xs - px).astype(np.float64)
    y = (ys - py).astype(np.float64)
    z = -np.log(win[ys, xs] / peak)
    w = (win[ys, xs] / peak) ** 2
    design = np.stack([x * x, x * y, y * y], axis=1)
    coef, *_ = np.linalg.lstsq(design * w[:, None], z * w, rcond=None)
    a, b, c = coef
    quad = np.array([[a, b / 2.0], [b / 2.0, c]])
    evals, evecs = np.linalg.eigh(quad)
    if not np.all(evals > 0):
        raise ImagingError("the PSF main lobe is not elliptical (Gaussian fit failed)")
    sigma = 1.0 / np.sqrt(2.0 * evals)  # ascending evals -> descending sigma
    major_vec = evecs[:, 0]
    pa = math.degrees(math.atan2(-major_vec[0], major_vec[1]))
    pa = (pa + 90.0) % 180.0 - 90.0
    return RestoringBeam(
        bmaj_arcsec=float(sigma[0] * FWHM_PER_SIGMA * cell_arcsec),
        bmin_arcsec=float(sigma[1] * FWHM_PER_SIGMA * cell_arcsec),
        bpa_deg=pa,
    )


def gaussian_kernel(beam: RestoringBeam, cell_arcsec: float) -> NDArray[np.float64]:
    """Unit-peak Gaussian of ``beam`` on the pixel grid, out to 4 sigma of the major axis."""
    smaj = beam.bmaj_arcsec / FWHM_PER_SIGMA / cell_arcsec
    smin = beam.bmin_arcsec / FWHM_PER_SIGMA / cell_arcsec
    r = max(2, math.ceil(4.0 * smaj))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    t = math.radians(beam.bpa_deg)
    along = -xx * math.sin(t) + yy * math.cos(t)
    across = xx * math.cos(t) + yy * math.sin(t)
    return np.exp(-0.5 * ((along / smaj) ** 2 + (across / smin) ** 2))


def restore(
    model: NDArray[np.floating],
    residual: NDArray[np.floating],
    beam: RestoringBeam,
    cell_arcsec: float,
) -> NDArray[np.float32]:
    """Residual plus the clean components (Jy/pixel) convolved with the restoring beam."""
    kernel = gaussian_kernel(beam, cell_arcsec)
    comps = np.nan_to_num(np.asarray(model, dtype=np.float64))
    smooth = signal.oaconvolve(comps, kernel, mode="same") if comps.any() else comps
    return np.asarray(np.asarray(residual, dtype=np.float64) + smooth, dtype=np.float32)
