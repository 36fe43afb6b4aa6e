"""Image quality: robust rms, peak, dynamic range, and expected sources measured.

* rms: 1.4826 x the median absolute deviation of the image inside the primary-beam
  cutoff, iterated three times with every pixel above ``mask_sigma`` x rms, and a
  disc of ``mask_radius_beams`` around it and around every expected source, masked;
* peak and dynamic range (peak / rms) of the image (not primary-beam corrected);
* each expected source: the brightest local maximum of the image within
  ``match_radius_beams`` of its position, refined to sub-pixel precision by a
  quadratic fit to the logarithm of the 3 x 3 pixels around it (exact for a
  Gaussian restoring beam of any orientation); its primary-beam-corrected flux
  (apparent peak / beam at the fitted position) is compared with the intrinsic flux
  at the image's reference frequency, its position with the expected one.

Failing checks are reported in :class:`~dsa_stream.imaging.options.QaReport`
(``passed`` False), never raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray
from scipy import ndimage, signal

from dsa_stream.imaging.options import (
    ExpectedSource,
    QaCheck,
    QaOptions,
    QaReport,
    RestoringBeam,
    SourceMeasurement,
)

MAD_TO_SIGMA = 1.4826
#: Pixels above which the rms is computed on a decimated image.
RMS_MAX_PIXELS = 4_000_000


@dataclass(frozen=True)
class QaInputs:
    """The images and facts QA works on (2-D arrays on one grid)."""

    image: NDArray[np.float32]
    residual: NDArray[np.float32] | None
    model: NDArray[np.float32] | None
    psf: NDArray[np.float32] | None
    pb: NDArray[np.float32]
    wcs: WCS
    beam: RestoringBeam
    cell_arcsec: float
    ref_freq_hz: float
    pb_cutoff: float


def robust_sigma(values: NDArray[np.floating]) -> float:
    """1.4826 x median absolute deviation from the median (NaN-free input)."""
    if values.size == 0:
        return float("nan")
    med = np.median(values)
    return float(MAD_TO_SIGMA * np.median(np.abs(values - med)))


def _disc_mask(shape: tuple[int, int], xy: Sequence[tuple[float, float]], radius: float) -> NDArray:
    mask = np.zeros(shape, dtype=bool)
    r = max(1, math.ceil(radius))
    for x, y in xy:
        ix, iy = round(x), round(y)
        x0, x1 = max(0, ix - r), min(shape[1], ix + r + 1)
        y0, y1 = max(0, iy - r), min(shape[0], iy + r + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    return mask


def source_mask(
    image: NDArray[np.floating],
    region: NDArray[np.bool_],
    radius_px: float,
    sigma: float,
    threshold_sigma: float,
) -> NDArray[np.bool_]:
    """Pixels within ``radius_px`` of any pixel brighter (in |value|) than threshold x sigma."""
    bright = region & (np.abs(np.nan_to_num(image)) > threshold_sigma * sigma)
    if not bright.any() or radius_px <= 0:
        return bright
    return ndimage.distance_transform_edt(~bright) <= radius_px


def image_rms(
    image: NDArray[np.floating],
    region: NDArray[np.bool_],
    radius_px: float,
    threshold_sigma: float,
    extra_mask: NDArray[np.bool_] | None = None,
    iterations: int = 3,
) -> tuple[float, float]:
    """Robust rms with bright pixels masked; returns (rms, masked fraction of the region).

    Images above :data:`RMS_MAX_PIXELS` are decimated (every k-th pixel in both
    directions; neighbouring pixels of an image are correlated over the beam anyway).
    """
    step = max(1, math.floor(math.sqrt(image.size / RMS_MAX_PIXELS)))
    if step > 1:
        image, region = image[::step, ::step], region[::step, ::step]
        extra_mask = None if extra_mask is None else extra_mask[::step, ::step]
        radius_px /= step
    usable = region & np.isfinite(image)
    if extra_mask is not None:
        usable &= ~extra_mask
    sigma = robust_sigma(image[usable])
    mask = np.zeros(image.shape, dtype=bool)
    for _ in range(iterations):
        if not math.isfinite(sigma) or sigma <= 0:
            break
        mask = source_mask(image, usable, radius_px, sigma, threshold_sigma)
        values = image[usable & ~mask]
        if values.size < 100:
            break
        sigma = robust_sigma(values)
    n_region = max(1, int(region.sum()))
    masked = 1.0 - float((usable & ~mask).sum()) / n_region
    return sigma, masked


def refine_peak(image: NDArray[np.floating], iy: int, ix: int) -> tuple[float, float, float]:
    """Sub-pixel peak (value, x, y) from a quadratic fit to log(image) on the 3 x 3 pixels.

    Falls back to a plain quadratic fit when a pixel is not positive, and to the pixel
    itself at the image edge or when the fit is not a maximum.
    """
    ny, nx = image.shape
    value = float(image[iy, ix])
    if not (1 <= iy < ny - 1 and 1 <= ix < nx - 1):
        return value, float(ix), float(iy)
    patch = np.asarray(image[iy - 1 : iy + 2, ix - 1 : ix + 2], dtype=np.float64)
    if not np.all(np.isfinite(patch)):
        return value, float(ix), float(iy)
    use_log = bool(np.all(patch > 0))
    z = np.log(patch) if use_log else patch
    yy, xx = np.mgrid[-1:2, -1:2]
    x, y = xx.ravel().astype(float), yy.ravel().astype(float)
    design = np.stack([np.ones(9), x, y, x * x, x * y, y * y], axis=1)
    c, *_ = np.linalg.lstsq(design, z.ravel(), rcond=None)
    hess = np.array([[2 * c[3], c[4]], [c[4], 2 * c[5]]])
    if np.linalg.det(hess) <= 0 or hess[0, 0] >= 0:
        return value, float(ix), float(iy)
    dx, dy = np.linalg.solve(hess, -c[1:3])
    if abs(dx) > 1 or abs(dy) > 1:
        return value, float(ix), float(iy)
    top = c[0] + c[1] * dx + c[2] * dy + c[3] * dx * dx + c[4] * dx * dy + c[5] * dy * dy
    peak = float(np.exp(top)) if use_log else float(top)
    return peak, float(ix + dx), float(iy + dy)


def _sample(array: NDArray[np.floating], x: float, y: float) -> float:
    """Bilinear sample at pixel (x, y); NaN outside."""
    ny, nx = array.shape
    if not (0 <= x <= nx - 1 and 0 <= y <= ny - 1):
        return float("nan")
    v = ndimage.map_coordinates(np.nan_to_num(array, nan=0.0), [[y], [x]], order=1)
    return float(v[0])


def _separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    s = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(s)))) * 3600.0


def _component_flux(q: QaInputs, x: float, y: float, radius: float) -> float | None:
    """Clean-component flux within ``radius`` px of (x, y) plus the residual there (Jy)."""
    if q.model is None:
        return None
    ny, nx = q.model.shape
    r = max(1.0, radius)
    x0, x1 = max(0, math.floor(x - r)), min(nx, math.ceil(x + r) + 1)
    y0, y1 = max(0, math.floor(y - r)), min(ny, math.ceil(y + r) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    total = float(np.nansum(np.where(inside, q.model[y0:y1, x0:x1], 0.0)))
    if q.residual is not None:
        total += _sample(q.residual, x, y)
    return total


def _psf_peak(psf: NDArray[np.floating]) -> tuple[int, int]:
    ny, nx = psf.shape
    cy, cx = ny // 2, nx // 2
    win = np.nan_to_num(psf[cy - 2 : cy + 3, cx - 2 : cx + 3])
    jy, jx = np.unravel_index(int(np.argmax(win)), win.shape)
    return int(cy - 2 + jy), int(cx - 2 + jx)


def psf_fit_amplitude(q: QaInputs, x: float, y: float, radius: float) -> float | None:
    """Amplitude of the PSF fitted at (x, y) to residual + (clean components near it * PSF).

    The components within ``radius`` px are convolved with the PSF and added back to the
    residual, which rebuilds the dirty image of this source alone (the sidelobes of other
    sources stay subtracted); the PSF, shifted to the sub-pixel position, is fitted over
    its main lobe (PSF >= 0.5). None without model, residual and PSF.
    """
    if q.model is None or q.residual is None or q.psf is None:
        return None
    ny, nx = q.image.shape
    h = max(3, math.ceil(q.beam.bmaj_arcsec / q.cell_arcsec), math.ceil(radius) + 1)
    ix, iy = round(x), round(y)
    if not (h <= ix < nx - h and h <= iy < ny - h):
        return None
    py, px = _psf_peak(q.psf)
    if not (2 * h <= py < q.psf.shape[0] - 2 * h and 2 * h <= px < q.psf.shape[1] - 2 * h):
        return None
    psf = np.nan_to_num(
        np.asarray(
            q.psf[py - 2 * h : py + 2 * h + 1, px - 2 * h : px + 2 * h + 1], dtype=np.float64
        )
    )
    psf /= psf[2 * h, 2 * h]
    yy, xx = np.mgrid[iy - h : iy + h + 1, ix - h : ix + h + 1]
    near = (xx - x) ** 2 + (yy - y) ** 2 <= radius * radius
    comps = np.where(near, np.nan_to_num(q.model[iy - h : iy + h + 1, ix - h : ix + h + 1]), 0.0)
    dirty = np.nan_to_num(
        np.asarray(q.residual[iy - h : iy + h + 1, ix - h : ix + h + 1], dtype=np.float64)
    )
    if comps.any():
        dirty = dirty + signal.fftconvolve(comps, psf, mode="same")
    shifted = ndimage.shift(psf, (y - iy, x - ix), order=3, mode="constant")
    model = shifted[h : 3 * h + 1, h : 3 * h + 1]
    lobe = model >= 0.5
    if lobe.sum() < 3:
        return None
    return float(np.sum(dirty[lobe] * model[lobe]) / np.sum(model[lobe] ** 2))


def measure_source(
    src: ExpectedSource, q: QaInputs, rms: float, opts: QaOptions
) -> SourceMeasurement | None:
    """Measure one expected source; None when it lies outside the image."""
    x, y = (float(v) for v in q.wcs.world_to_pixel_values(src.ra_deg, src.dec_deg))
    ny, nx = q.image.shape
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= nx - 1 and 0 <= y <= ny - 1):
        return None
    expected = src.flux_at(q.ref_freq_hz)
    response = _sample(q.pb, x, y)
    predicted = expected * response / rms if rms > 0 else float("inf")
    checked = bool(response >= q.pb_cutoff and predicted >= opts.min_snr)
    base = {
        "name": src.name,
        "ra_deg": src.ra_deg,
        "dec_deg": src.dec_deg,
        "expected_flux_jy": expected,
        "pb_response": response,
        "predicted_snr": predicted,
        "checked": checked,
    }
    radius = opts.match_radius_beams * q.beam.geometric_mean_arcsec() / q.cell_arcsec
    r = max(1.5, radius)
    x0, x1 = max(0, math.floor(x - r)), min(nx, math.ceil(x + r) + 1)
    y0, y1 = max(0, math.floor(y - r)), min(ny, math.ceil(y + r) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    window = np.where((xx - x) ** 2 + (yy - y) ** 2 <= r * r, q.image[y0:y1, x0:x1], -np.inf)
    window = np.where(np.isfinite(window), window, -np.inf)
    if not np.isfinite(window.max()):
        return SourceMeasurement(found=False, **base)
    jy, jx = np.unravel_index(int(np.argmax(window)), window.shape)
    iy, ix = int(y0 + jy), int(x0 + jx)
    neighbourhood = q.image[max(0, iy - 1) : iy + 2, max(0, ix - 1) : ix + 2]
    if q.image[iy, ix] < np.nanmax(neighbourhood) or q.image[iy, ix] <= opts.detection_sigma * rms:
        return SourceMeasurement(found=False, **base)
    peak, fx, fy = refine_peak(q.image, iy, ix)
    ra, dec = (float(v) for v in q.wcs.pixel_to_world_values(fx, fy))
    beam_here = _sample(q.pb, fx, fy)
    ok = beam_here > 0
    peak_flux = peak / beam_here if ok else float("nan")
    comp = _component_flux(q, fx, fy, radius)
    comp_flux = comp / beam_here if comp is not None and ok else None
    fitted = psf_fit_amplitude(q, fx, fy, radius)
    psf_flux = fitted / beam_here if fitted is not None and ok else None
    chosen = {"psf_fit": psf_flux, "components": comp_flux, "peak": peak_flux}
    flux = chosen[opts.flux_measure]
    if flux is None:
        flux = peak_flux
    offset = _separation_arcsec(src.ra_deg, src.dec_deg, ra % 360.0, dec)
    return SourceMeasurement(
        found=True,
        measured_flux_jy=flux,
        peak_flux_jy=peak_flux,
        psf_flux_jy=psf_flux,
        component_flux_jy=comp_flux,
        apparent_peak_jy=peak,
        measured_ra_deg=ra % 360.0,
        measured_dec_deg=dec,
        offset_arcsec=offset,
        offset_beams=offset / q.beam.geometric_mean_arcsec(),
        flux_ratio=flux / expected,
        snr=peak / rms if rms > 0 else float("inf"),
        **base,
    )


def _limit_check(name: str, value: float, limit: float | None, upper: bool) -> QaCheck:
    if limit is None:
        return QaCheck(name=name, status="skipped", value=value, detail="no limit configured")
    ok = value <= limit if upper else value >= limit
    return QaCheck(name=name, status="pass" if ok else "fail", value=value, limit=limit)


def _source_checks(
    sources: list[SourceMeasurement], opts: QaOptions, given: bool
) -> tuple[list[QaCheck], float | None, float | None]:
    checked = [s for s in sources if s.checked]
    found = [s for s in checked if s.found and s.flux_ratio is not None]
    if not given or len(checked) < max(1, opts.min_checked_sources):
        why = "no expected sources given" if not given else "too few bright expected sources"
        skipped = [
            QaCheck(name=n, status="skipped", detail=why)
            for n in ("detections", "flux_scale", "astrometry")
        ]
        return skipped, None, None
    missing = [s.name for s in checked if not s.found]
    checks = [
        QaCheck(
            name="detections",
            status="fail" if missing else "pass",
            value=float(len(found)),
            limit=float(len(checked)),
            detail=("missing: " + ", ".join(missing)) if missing else "",
        )
    ]
    ratio = float(np.median([s.flux_ratio for s in found])) if found else None
    offset = float(np.median([s.offset_beams for s in found])) if found else None
    if ratio is None or offset is None:
        checks += [QaCheck(name=n, status="fail") for n in ("flux_scale", "astrometry")]
        return checks, ratio, offset
    err = abs(ratio - 1.0)
    checks.append(
        QaCheck(
            name="flux_scale",
            status="pass" if err <= opts.max_flux_error else "fail",
            value=ratio,
            limit=opts.max_flux_error,
            detail="median measured/expected; limit on |ratio - 1|",
        )
    )
    checks.append(_limit_check("astrometry", offset, opts.max_position_error_beams, upper=True))
    return checks, ratio, offset


def assess(q: QaInputs, expected: Sequence[ExpectedSource], opts: QaOptions) -> QaReport:
    """Measure the image and decide pass/fail."""
    region = np.isfinite(q.pb) & (q.pb >= q.pb_cutoff) & np.isfinite(q.image)
    if not region.any():
        region = np.isfinite(q.image)
    beam_px = q.beam.geometric_mean_arcsec() / q.cell_arcsec
    radius = opts.mask_radius_beams * beam_px
    xy = []
    for src in expected:
        x, y = q.wcs.world_to_pixel_values(src.ra_deg, src.dec_deg)
        if np.isfinite(x) and np.isfinite(y):
            xy.append((float(x), float(y)))
    known = _disc_mask(q.image.shape, xy, radius) if xy else None
    rms, masked = image_rms(q.image, region, radius, opts.mask_sigma, known)
    res_rms = None
    if q.residual is not None:
        values = q.residual[region & np.isfinite(q.residual)]
        res_rms = robust_sigma(values)
    finite = np.where(np.isfinite(q.image), q.image, -np.inf)
    py, px = np.unravel_index(int(np.argmax(finite)), finite.shape)
    peak = float(q.image[py, px])
    pra, pdec = (float(v) for v in q.wcs.pixel_to_world_values(px, py))
    dyn = peak / rms if rms > 0 else float("inf")
    measured = [m for m in (measure_source(s, q, rms, opts) for s in expected) if m is not None]
    checks = [
        _limit_check("rms", rms, opts.max_rms_jy, upper=True),
        _limit_check("dynamic_range", dyn, opts.min_dynamic_range, upper=False),
        _limit_check("beam", q.beam.bmaj_arcsec, opts.max_beam_arcsec, upper=True),
    ]
    if not math.isfinite(rms) or rms <= 0:
        checks.append(QaCheck(name="noise_estimate", status="fail", detail="rms not positive"))
    src_checks, ratio, offset = _source_checks(measured, opts, bool(expected))
    checks += src_checks
    return QaReport(
        rms_jy=rms,
        residual_rms_jy=res_rms,
        peak_jy=peak,
        peak_ra_deg=pra % 360.0,
        peak_dec_deg=pdec,
        dynamic_range=dyn,
        masked_fraction=masked,
        beam=q.beam,
        sources=tuple(measured),
        n_checked=sum(1 for m in measured if m.checked),
        flux_ratio_median=ratio,
        position_offset_median_beams=offset,
        checks=tuple(checks),
        passed=not any(c.status == "fail" for c in checks),
    )
