"""Options and input models of the mosaic stage (frozen pydantic models).

This module imports nothing heavy: :mod:`dsa_stream.config` validates the ``mosaic:``
section of the configuration into :class:`MosaicOptions`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def aware_utc(value: datetime) -> datetime:
    """Reject naive datetimes; return the value in UTC (observation times are UTC)."""
    if value.tzinfo is None:
        raise ValueError("observation times must be timezone-aware (UTC)")
    return value.astimezone(UTC)


class PlannerOptions(BaseModel):
    """Rules that make consecutive groups a mosaic window.

    The default stride of 8 (two groups shared by consecutive windows) is the smallest
    overlap that gives every sky position of a continuous strip full depth in at least
    one mosaic: depth saturates after about three overlapping drift tiles (the beam FWHM
    is about 2.5 tile steps), so a mosaic is shallow within about one tile of its RA ends;
    with an overlap of two tiles those ends lie inside the full-depth part of the
    neighbouring mosaic. It costs 25 % more coadds than stride 10, which is cheap
    (seconds per mosaic against minutes of imaging per group).
    """

    model_config = _FROZEN

    window_size: int = Field(10, ge=1)
    """Groups in one window (consecutive in observation time)."""
    stride: int = Field(8, ge=1)
    """Groups between the first members of consecutive windows of a run
    (10: no overlap; 8: two groups shared by neighbouring windows)."""
    max_gap_s: float = Field(360.0, gt=0)
    """Neighbouring groups of a window are less than this far apart, mid to mid (s)."""
    max_span_s: float = Field(3600.0, gt=0)
    """Largest span of a window, first member's start to last member's end (s)."""
    dec_tolerance_deg: float = Field(0.1, gt=0)
    """Every member's Dec is within this of the first group of its run (deg)."""

    @model_validator(mode="after")
    def _stride_le_size(self) -> PlannerOptions:
        if self.stride > self.window_size:
            raise ValueError(
                f"stride ({self.stride}) larger than window_size ({self.window_size}) "
                "would leave groups out of every mosaic"
            )
        return self


class CoaddOptions(BaseModel):
    """How the primary-beam-weighted linear mosaic is computed."""

    model_config = _FROZEN

    sensitivity_cutoff: float = Field(0.2, ge=0, lt=1)
    """Pixels where sqrt(sum_i w_i B_i^2) is below this fraction of its maximum are NaN
    (for one tile: where its beam is below this level)."""
    tile_beam_min: float = Field(0.05, ge=0, lt=1)
    """A tile contributes only where its beam is at least this (beam-model edges)."""
    interpolation_order: Literal[1, 3, 5] = 5
    """Spline order of the image resampling: 1 bilinear, 3 cubic, 5 quintic. For a beam
    sampled with 2.5-2.7 pixels per FWHM (e.g. 15-18" at 6") the peak of a point source
    drops by up to 19 % (bilinear), 2.4 % (cubic) or 0.8 % (quintic); quintic costs
    ~40 % more resampling time than cubic."""
    resampler: Literal["auto", "cubic", "spline"] = "auto"
    """Image resampling: ``cubic`` is Catmull-Rom cubic convolution on locally affine
    blocks (Matplotlib's Agg resampler, ~5-10x faster); ``spline`` is a spline of
    ``interpolation_order`` evaluated per pixel (scipy); ``auto`` takes ``cubic`` for a
    tile whose BMIN spans at least ``cubic_min_px_per_beam`` mosaic pixels, else ``spline``."""
    cubic_min_px_per_beam: float = Field(4.0, gt=0)
    """Coarsest beam sampling (BMIN / mosaic pixel) for which ``auto`` takes ``cubic``:
    at 4 pixels per FWHM cubic convolution lowers a peak by at most ~1 %."""
    affine_block_px: int = Field(128, ge=8)
    """``cubic``: mosaic block size over which the pixel mapping is treated as affine."""
    affine_tol_px: float = Field(0.01, gt=0)
    """``cubic``: a block is split until its affine fit is within this of the exact
    mapping (tile pixels, at the nodes ``coord_step_px`` apart)."""
    cell_arcsec: float | None = Field(None, gt=0)
    """Pixel size of the mosaic (arcsec); None: the finest pixel of the inputs."""
    projection: Literal["SIN", "TAN", "ZEA"] = "SIN"
    """Projection of the mosaic grid, centred at the circular-mean RA of the tiles."""
    max_pixels: int = Field(400_000_000, ge=1)
    """Refuse a mosaic grid larger than this many pixels (guards a bad WCS)."""
    coord_step_px: int = Field(32, ge=1)
    """Output-to-input pixel mapping is computed exactly on a grid with this step and
    interpolated bilinearly in between (smooth; error ~1e-3 pixel at 32)."""
    block_rows: int = Field(256, ge=8)
    """Output rows processed at a time (bounds the temporary memory per tile)."""
    telescope: str | None = None
    """TELESCOP of the products; None: the members' common TELESCOP, else DSA_110."""
    preview: bool = True
    """Write the PNG preview."""
    preview_max_px: int = Field(2400, ge=64)
    """Longest side of the preview image in pixels (the mosaic is block-averaged)."""


class QAOptions(BaseModel):
    """Pass/fail thresholds of the mosaic quality checks."""

    model_config = _FROZEN

    min_members: int = Field(10, ge=1)
    """Fewest images a mosaic must hold."""
    noise_ratio_min: float = Field(0.7, gt=0)
    """Lowest allowed measured / expected noise (robust rms of mosaic / noise map)."""
    noise_ratio_max: float = Field(1.5, gt=0)
    """Highest allowed measured / expected noise."""
    min_coverage: float = Field(0.5, ge=0, le=1)
    """Lowest allowed fraction of the tiles' footprint that is above the cutoff."""
    min_dynamic_range: float = Field(0.0, ge=0)
    """Lowest allowed peak / measured noise (0: not checked)."""
    source_min_snr: float = Field(20.0, gt=0)
    """Expected sources are checked where flux / expected noise is at least this."""
    flux_measure: Literal["integrated", "peak"] = "peak"
    """Source flux: the refined restored peak, or a fitted Gaussian's integral over the
    beam area (for images with fewer than ~5 px across the beam, where clean components
    split between pixels make the restored peak read low; noisier at low S/N)."""
    search_radius_beams: float = Field(1.0, gt=0)
    """A source is searched within this many beam FWHM of its expected position."""
    max_flux_bias: float = Field(0.1, ge=0)
    """Largest allowed |median(measured / expected flux) - 1|."""
    max_position_offset_beams: float = Field(0.25, ge=0)
    """Largest allowed median position offset, in beam FWHM (sqrt(BMAJ BMIN))."""
    min_sources_found: float = Field(0.8, ge=0, le=1)
    """Smallest fraction of checkable expected sources that must be found."""


class MosaicOptions(BaseModel):
    """The ``mosaic:`` configuration section: planning, coadd and QA."""

    model_config = _FROZEN

    planner: PlannerOptions = PlannerOptions()
    coadd: CoaddOptions = CoaddOptions()
    qa: QAOptions = QAOptions()


class ExpectedSource(BaseModel):
    """A source the mosaic should show (simulation truth or a catalogue)."""

    model_config = _FROZEN

    ra_deg: float
    """ICRS right ascension (deg)."""
    dec_deg: float = Field(ge=-90, le=90)
    """ICRS declination (deg)."""
    flux_jy: float = Field(gt=0)
    """Flux density at the mosaic frequency (Jy)."""
    name: str | None = None
    """Label for reports."""


class MosaicTile(BaseModel):
    """One member image of a mosaic, with what the coadd needs to know about it.

    The image is the apparent sky (Jy/beam, not primary-beam corrected); the beam is
    the primary beam of that image on the same pixel grid (drift and band averaged).
    """

    model_config = _FROZEN

    group_key: str
    """Group key of the observation (its start, ``YYYY-MM-DDTHH:MM:SS``)."""
    image_path: Path
    """FITS image (apparent sky, Jy/beam)."""
    beam_path: Path
    """FITS primary beam on the image's grid."""
    image_id: str
    """Identity of the image (registry product key and version, or a checksum)."""
    obs_start: datetime
    """Observation start (UTC, from the data)."""
    obs_end: datetime
    """Observation end (UTC)."""
    dec_deg: float | None = None
    """Pointing Dec (deg), for reports."""
    rms_jy: float | None = Field(None, gt=0)
    """Off-source rms of the image (Jy/beam); None: computed robustly from the image."""

    @field_validator("obs_start", "obs_end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return aware_utc(value)

    @model_validator(mode="after")
    def _ordered(self) -> MosaicTile:
        if self.obs_end <= self.obs_start:
            raise ValueError(f"tile {self.group_key}: obs_end is not after obs_start")
        return self
