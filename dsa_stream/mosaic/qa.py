"""Mosaic quality checks: noise, peak, dynamic range, coverage, expected sources.

The measured noise is compared with the noise map; expected sources are checked in
flux and position.

Sources are measured by their peak: a least-squares quadratic fit to the logarithm of
the 3 x 3 pixels around the brightest pixel near the expected position, which is exact
for an elliptical Gaussian (a restored point source), giving its peak (Jy/beam = Jy)
and a sub-pixel position.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from dsa_stream.mosaic.coadd import Coadd, robust_rms
from dsa_stream.mosaic.options import ExpectedSource, QAOptions
from dsa_stream.mosaic.results import MosaicQA, SourceCheck

logger = logging.getLogger(__name__)

_DX, _DY = np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0])
_DESIGN = np.stack(
    [np.ones(9), _DX.ravel(), _DY.ravel(), _DX.ravel() ** 2, (_DX * _DY).ravel(), _DY.ravel() ** 2],
    axis=1,
)


def _refine(stamp: np.ndarray) -> tuple[float, float, float] | None:
    """(dx, dy, peak) of the log-quadratic through a 3 x 3 stamp, or None if not a peak."""
    if stamp.shape != (3, 3) or not np.all(np.isfinite(stamp)) or np.any(stamp <= 0):
        return None
    a, b, c, d, e, f = np.linalg.lstsq(_DESIGN, np.log(stamp.ravel()), rcond=None)[0]
    hess = np.array([[2 * d, e], [e, 2 * f]])
    if np.linalg.det(hess) <= 0 or hess[0, 0] >= 0:
        return None
    dx, dy = -np.linalg.solve(hess, [b, c])
    if abs(dx) > 1 or abs(dy) > 1:
        return None
    log_peak = a + b * dx + c * dy + d * dx * dx + e * dx * dy + f * dy * dy
    return float(dx), float(dy), float(math.exp(log_peak))


def measure_peak(
    image: np.ndarray, x: float, y: float, radius_px: float
) -> tuple[float, float, float] | None:
    """Brightest point within ``radius_px`` of pixel (x, y): (x, y, peak) refined, or None."""
    ny, nx = image.shape
    r = max(1, math.ceil(radius_px))
    cx, cy = int(round(x)), int(round(y))
    y0, y1, x0, x1 = (
        max(cy - r, 1),
        min(cy + r + 1, ny - 1),
        max(cx - r, 1),
        min(cx + r + 1, nx - 1),
    )
    if y1 <= y0 or x1 <= x0:
        return None
    box = image[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = ((xx - x) ** 2 + (yy - y) ** 2 <= radius_px**2) & np.isfinite(box)
    if not inside.any():
        return None
    k = int(np.argmax(np.where(inside, box, -np.inf)))
    py, px = int(yy.ravel()[k]), int(xx.ravel()[k])
    fit = _refine(image[py - 1 : py + 2, px - 1 : px + 2])
    if fit is None:
        return float(px), float(py), float(image[py, px])
    return px + fit[0], py + fit[1], fit[2]


def integrated_flux(
    image: np.ndarray, x: float, y: float, fwhm_px: float
) -> tuple[float, float, float] | None:
    """Flux (Jy) of a source at pixel (x, y) from an elliptical Gaussian fit, and its centre.

    The integral of the fitted Gaussian divided by the restoring-beam area
    (pi / (4 ln 2) * FWHM^2): for a point source it equals the peak of a perfectly
    restored image, and unlike the peak it keeps the flux that clean components split
    between pixels spread out (a restored peak sampled at < 5 px per beam reads low).
    None when the fit fails or is not a beam-sized source.
    """
    from scipy.optimize import curve_fit

    half = max(3, math.ceil(1.2 * fwhm_px))
    cx, cy = int(round(x)), int(round(y))
    ny, nx = image.shape
    y0, y1, x0, x1 = (
        max(cy - half, 0),
        min(cy + half + 1, ny),
        max(cx - half, 0),
        min(cx + half + 1, nx),
    )
    box = image[y0:y1, x0:x1].astype(np.float64)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    ok = np.isfinite(box)
    if ok.sum() < 12:
        return None
    s0 = fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0)))

    def model(
        coords: np.ndarray, a: float, mx: float, my: float, sa: float, sb: float, th: float
    ) -> np.ndarray:
        dx, dy = coords[0] - mx, coords[1] - my
        c, s_ = math.cos(th), math.sin(th)
        u, v = c * dx + s_ * dy, -s_ * dx + c * dy
        return a * np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2))

    coords = np.vstack([xx[ok], yy[ok]])
    try:
        (a, mx, my, sa, sb, _th), _ = curve_fit(
            model, coords, box[ok], p0=(float(np.nanmax(box)), x, y, s0, s0, 0.0), maxfev=4000
        )
    except (RuntimeError, ValueError):
        return None
    sa, sb = abs(sa), abs(sb)
    beam_area = math.pi / (4.0 * math.log(2.0)) * fwhm_px**2
    if not (0.2 * s0 < min(sa, sb) and max(sa, sb) < 6.0 * s0) or a <= 0:
        return None
    if math.hypot(mx - x, my - y) > fwhm_px:
        return None
    return float(a * 2.0 * math.pi * sa * sb / beam_area), float(mx), float(my)


def _separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    s = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(s))))


def check_source(
    src: ExpectedSource,
    coadd: Coadd,
    fwhm_deg: float | None,
    options: QAOptions,
) -> SourceCheck | None:
    """Measure one expected source; None when it is outside or too faint to check."""
    wcs: WCS = coadd.grid.wcs
    x, y = (float(v) for v in wcs.world_to_pixel_values(src.ra_deg % 360.0, src.dec_deg))
    ny, nx = coadd.grid.shape
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < nx - 0.5 and 0 <= y < ny - 0.5):
        return None
    sigma = float(coadd.noise[int(round(y)), int(round(x))])
    if not math.isfinite(sigma) or src.flux_jy / sigma < options.source_min_snr:
        return None
    cell = float(proj_plane_pixel_scales(wcs).mean())
    radius = options.search_radius_beams * (fwhm_deg if fwhm_deg else 3 * cell) / cell
    base = {
        "name": src.name,
        "ra_deg": src.ra_deg,
        "dec_deg": src.dec_deg,
        "expected_flux_jy": src.flux_jy,
        "expected_noise_jy": sigma,
    }
    peak = measure_peak(coadd.mosaic, x, y, radius)
    if peak is None or peak[2] < 5 * sigma:
        return SourceCheck(found=False, **base)
    ra, dec = (float(v) for v in wcs.pixel_to_world_values(peak[0], peak[1]))
    offset = _separation_deg(src.ra_deg, src.dec_deg, ra, dec)
    flux = peak[2]
    if options.flux_measure == "integrated" and fwhm_deg:
        fit = integrated_flux(coadd.mosaic, peak[0], peak[1], fwhm_deg / cell)
        if fit is not None:
            flux = fit[0]
    return SourceCheck(
        found=True,
        measured_flux_jy=flux,
        peak_flux_jy=peak[2],
        flux_ratio=flux / src.flux_jy,
        measured_ra_deg=ra % 360.0,
        measured_dec_deg=dec,
        offset_arcsec=offset * 3600.0,
        offset_beams=offset / fwhm_deg if fwhm_deg else None,
        **base,
    )


def _noise_stats(coadd: Coadd) -> dict[str, float]:
    valid = np.isfinite(coadd.mosaic)
    noise = coadd.noise[valid]
    nmin = float(noise.min())
    deep = valid & (coadd.noise <= 1.2 * nmin)
    return {
        "noise_expected_min_jy": nmin,
        "noise_expected_median_jy": float(np.median(noise)),
        "noise_measured_jy": robust_rms(coadd.mosaic[deep]),
        "noise_ratio": robust_rms(coadd.mosaic[valid] / noise),
    }


def _peak(coadd: Coadd) -> tuple[float, float, float]:
    k = int(np.nanargmax(coadd.mosaic))
    y, x = np.unravel_index(k, coadd.mosaic.shape)
    ra, dec = coadd.grid.wcs.pixel_to_world_values(float(x), float(y))
    return float(coadd.mosaic[y, x]), float(ra) % 360.0, float(dec)


def _source_summary(checks: list[SourceCheck]) -> dict[str, float | int | None]:
    found = [c for c in checks if c.found and c.flux_ratio is not None]
    ratios = [c.flux_ratio for c in found if c.flux_ratio is not None]
    offsets = [c.offset_beams for c in found if c.offset_beams is not None]
    return {
        "n_sources_checked": len(checks),
        "n_sources_found": len(found),
        "flux_ratio_median": float(np.median(ratios)) if ratios else None,
        "flux_ratio_min": float(min(ratios)) if ratios else None,
        "flux_ratio_max": float(max(ratios)) if ratios else None,
        "offset_beams_median": float(np.median(offsets)) if offsets else None,
        "offset_beams_max": float(max(offsets)) if offsets else None,
    }


def _failures(stats: dict, options: QAOptions) -> list[str]:  # type: ignore[type-arg]
    out = []
    if stats["n_members"] < options.min_members:
        out.append(f"members {stats['n_members']} < {options.min_members}")
    ratio = stats["noise_ratio"]
    if not options.noise_ratio_min <= ratio <= options.noise_ratio_max:
        bounds = f"[{options.noise_ratio_min}, {options.noise_ratio_max}]"
        out.append(f"noise ratio {ratio:.3f} outside {bounds}")
    if stats["coverage_fraction"] < options.min_coverage:
        out.append(f"coverage {stats['coverage_fraction']:.3f} < {options.min_coverage}")
    if options.min_dynamic_range > 0 and stats["dynamic_range"] < options.min_dynamic_range:
        out.append(f"dynamic range {stats['dynamic_range']:.1f} < {options.min_dynamic_range}")
    checked = stats["n_sources_checked"]
    if checked:
        frac = stats["n_sources_found"] / checked
        if frac < options.min_sources_found:
            out.append(f"found {stats['n_sources_found']} of {checked} expected sources")
        med = stats["flux_ratio_median"]
        if med is not None and abs(med - 1) > options.max_flux_bias:
            out.append(f"median flux ratio {med:.3f} off by more than {options.max_flux_bias}")
        off = stats["offset_beams_median"]
        if off is not None and off > options.max_position_offset_beams:
            out.append(
                f"median position offset {off:.3f} beam > {options.max_position_offset_beams}"
            )
    return out


def assess_mosaic(
    coadd: Coadd,
    fwhm_deg: float | None,
    expected: Sequence[ExpectedSource],
    options: QAOptions,
) -> MosaicQA:
    """Quality checks of a coadded mosaic.

    Args:
        coadd: The mosaic and its noise map.
        fwhm_deg: Restoring-beam FWHM sqrt(BMAJ BMIN) in deg (None: unknown).
        expected: Sources the mosaic should show (may be empty).
        options: Thresholds.
    """
    peak, peak_ra, peak_dec = _peak(coadd)
    stats: dict = {  # type: ignore[type-arg]
        "n_members": len(coadd.uses),
        "coverage_fraction": coadd.valid_pixels / coadd.footprint_pixels,
        "valid_fraction": coadd.valid_pixels / (coadd.grid.shape[0] * coadd.grid.shape[1]),
        "peak_jy": peak,
        "peak_ra_deg": peak_ra,
        "peak_dec_deg": peak_dec,
        **_noise_stats(coadd),
    }
    stats["dynamic_range"] = peak / stats["noise_measured_jy"]
    checks = [c for s in expected if (c := check_source(s, coadd, fwhm_deg, options)) is not None]
    stats.update(_source_summary(checks))
    failures = _failures(stats, options)
    for line in failures:
        logger.warning("mosaic QA: %s", line)
    return MosaicQA(passed=not failures, failures=tuple(failures), sources=tuple(checks), **stats)
