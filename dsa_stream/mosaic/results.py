"""Result models of the mosaic stage (frozen pydantic models)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class SourceCheck(BaseModel):
    """An expected source measured in the mosaic."""

    model_config = _FROZEN

    name: str | None
    ra_deg: float
    dec_deg: float
    expected_flux_jy: float
    expected_noise_jy: float
    """Expected noise of the mosaic at the source (Jy/beam)."""
    found: bool
    """A peak was found within the search radius."""
    measured_flux_jy: float | None = None
    """Flux (Jy) by ``QAOptions.flux_measure``: the integral of a fitted Gaussian over the
    beam area (default), or the refined peak (Jy/beam = Jy for a point source)."""
    peak_flux_jy: float | None = None
    """Refined peak (Jy/beam)."""
    flux_ratio: float | None = None
    """measured / expected flux."""
    measured_ra_deg: float | None = None
    measured_dec_deg: float | None = None
    offset_arcsec: float | None = None
    offset_beams: float | None = None
    """Offset in units of the beam FWHM sqrt(BMAJ BMIN)."""


class MosaicQA(BaseModel):
    """Quality of a mosaic; ``passed`` is False when any check in ``failures`` failed."""

    model_config = _FROZEN

    passed: bool
    failures: tuple[str, ...]
    """One line per failed check."""
    n_members: int
    coverage_fraction: float
    """Pixels above the sensitivity cutoff / pixels with data from any tile."""
    valid_fraction: float
    """Pixels above the cutoff / all pixels of the grid."""
    noise_expected_min_jy: float
    """Lowest expected noise (Jy/beam): the deepest part of the mosaic."""
    noise_expected_median_jy: float
    """Median expected noise over the valid pixels (Jy/beam)."""
    noise_measured_jy: float
    """Robust rms of the mosaic where it is deepest (expected noise within 20 % of the
    minimum), Jy/beam."""
    noise_ratio: float
    """Robust rms of mosaic / expected noise over all valid pixels (1 = as expected)."""
    peak_jy: float
    peak_ra_deg: float
    peak_dec_deg: float
    dynamic_range: float
    """peak / noise_measured."""
    n_sources_checked: int = 0
    n_sources_found: int = 0
    flux_ratio_median: float | None = None
    flux_ratio_min: float | None = None
    flux_ratio_max: float | None = None
    offset_beams_median: float | None = None
    offset_beams_max: float | None = None
    sources: tuple[SourceCheck, ...] = ()


class TileSummary(BaseModel):
    """How one tile entered the mosaic."""

    model_config = _FROZEN

    group_key: str
    image_id: str
    image_path: Path
    beam_path: Path
    obs_start: datetime
    obs_end: datetime
    rms_jy: float
    """Noise of the tile used for its weight (Jy/beam)."""
    rms_source: str
    """``given`` (from the input) or ``robust`` (MAD of the image)."""
    weight: float
    """w = 1 / rms^2."""
    bmaj_deg: float | None
    bmin_deg: float | None
    bpa_deg: float | None
    pixels_used: int
    """Mosaic pixels this tile contributed to."""
    resampler: str = ""
    """How its image was resampled: ``cubic`` or ``spline`` (``CoaddOptions.resampler``)."""


class MosaicResult(BaseModel):
    """What :func:`~dsa_stream.mosaic.api.build_mosaic` made."""

    model_config = _FROZEN

    window_key: str
    version: int
    mosaic_path: Path
    """Mosaic FITS (Jy/beam, NaN outside coverage)."""
    noise_path: Path
    """Expected-noise FITS 1/sqrt(sum_i w_i B_i^2) (Jy/beam); weight = noise**-2."""
    preview_path: Path | None
    """PNG preview (None when disabled)."""
    qa_path: Path
    """This result as JSON, next to the mosaic."""
    shape: tuple[int, int]
    """(ny, nx) of the mosaic grid."""
    crval_deg: tuple[float, float]
    """(RA, Dec) of the grid reference, RA in [0, 360)."""
    cdelt_deg: tuple[float, float]
    projection: str
    bmaj_deg: float | None
    bmin_deg: float | None
    bpa_deg: float | None
    beam_spread: float | None
    """Largest relative deviation of a tile's beam area from the median's."""
    freq_hz: float | None
    obs_start: datetime
    obs_end: datetime
    tiles: tuple[TileSummary, ...]
    qa: MosaicQA
    config_hash: str | None
    software: dict[str, str | None]
    timings_s: dict[str, float]
