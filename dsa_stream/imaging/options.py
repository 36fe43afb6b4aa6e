"""Options, inputs and results of the imaging stage (frozen pydantic models).

One :class:`ImagingOptions` drives both backends; :mod:`dsa_stream.imaging.wsclean` and
:mod:`dsa_stream.imaging.tclean` translate it (the mapping is in ``docs/imaging.md``).
This module imports nothing heavy: :mod:`dsa_stream.config` builds its ``image:`` section
from :class:`ImagingOptions`.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

Backend = Literal["wsclean", "tclean"]
Weighting = Literal["natural", "uniform", "briggs"]


class QaOptions(BaseModel):
    """Image quality checks and their pass/fail limits (a failure is recorded, not raised)."""

    model_config = _FROZEN

    min_snr: float = Field(default=20.0, gt=0.0)
    """Expected sources whose predicted apparent peak is at least this many times the image
    rms enter the flux and position checks."""
    match_radius_beams: float = Field(default=1.0, gt=0.0)
    """Search radius around an expected position, in restoring-beam FWHM (geometric mean)."""
    detection_sigma: float = Field(default=5.0, gt=0.0)
    """A source counts as found when a local maximum within the match radius reaches
    this many rms."""
    flux_measure: Literal["psf_fit", "peak", "components"] = "psf_fit"
    """Which measurement the flux check uses (see :class:`SourceMeasurement`): the PSF fit
    to the rebuilt local dirty image, the restored peak, or the clean-component sum."""
    max_flux_error: float = Field(default=0.1, gt=0.0)
    """Largest allowed |median(measured / expected) - 1| of the checked sources."""
    max_position_error_beams: float = Field(default=0.25, gt=0.0)
    """Largest allowed median position offset of the checked sources (beams)."""
    min_checked_sources: int = Field(default=1, ge=0)
    """Fewest checked sources for the flux/position checks to pass when expected sources
    were given (0: a field without bright expected sources passes)."""
    max_rms_jy: float | None = Field(default=None, gt=0.0)
    """Largest allowed image rms (Jy/beam); None: not checked."""
    min_dynamic_range: float | None = Field(default=None, gt=0.0)
    """Smallest allowed peak / rms; None: not checked."""
    max_beam_arcsec: float | None = Field(default=None, gt=0.0)
    """Largest allowed restoring-beam major axis (arcsec); None: not checked."""
    mask_sigma: float = Field(default=5.0, gt=0.0)
    """Pixels above this many rms (and their surroundings) are masked for the rms."""
    mask_radius_beams: float = Field(default=2.0, ge=0.0)
    """Radius of the mask grown around every bright pixel and expected source (beams)."""


class ImagingOptions(BaseModel):
    """How to image one Measurement Set, for either backend.

    The defaults image a full DSA-110 group (96 antennas, 768 or 192 channels) for
    continuum quick-look; ``docs/imaging.md`` gives their justification and cost.
    """

    model_config = _FROZEN

    backend: Backend = "wsclean"
    """``wsclean`` (Debian WSClean >= 3.0, the default) or ``tclean`` (casatasks, run in a
    child process)."""
    size_px: int = Field(default=5400, ge=16, le=32768)
    """Image width = height (pixels, even)."""
    cell_arcsec: float = Field(default=3.0, gt=0.0)
    """Pixel size (arcsec)."""
    weighting: Weighting = "briggs"
    """Visibility weighting."""
    robust: float = Field(default=-0.5, ge=-2.0, le=2.0)
    """Briggs robustness (used with ``briggs`` only)."""
    niter: int = Field(default=50000, ge=0)
    """Largest number of minor-cycle (clean) iterations."""
    gain: float = Field(default=0.1, gt=0.0, le=1.0)
    """Minor-cycle loop gain."""
    mgain: float = Field(default=0.8, gt=0.0, le=1.0)
    """Major-cycle gain: each major cycle cleans the peak residual down by this fraction
    (WSClean ``-mgain``; tclean ``minpsffraction = maxpsffraction = 1 - mgain``). 1.0
    means a single major cycle (WSClean's default, which under-cleans)."""
    threshold_jy: float = Field(default=0.0, ge=0.0)
    """Absolute stopping threshold (Jy)."""
    auto_threshold_sigma: float | None = Field(default=1.0, gt=0.0)
    """Stop cleaning at this many times the robust noise (WSClean ``-auto-threshold``,
    tclean ``nsigma``); None: off."""
    auto_mask_sigma: float | None = Field(default=5.0, gt=0.0)
    """WSClean ``-auto-mask``: clean freely down to this many sigma, then only where
    components were found, down to the auto threshold. tclean has no equivalent here
    (its auto-multithresh masking differs); None: off."""
    max_major_cycles: int = Field(default=20, ge=1)
    """Cap on major cycles (WSClean ``-nmiter``, tclean ``nmajor``)."""
    uv_min_lambda: float | None = Field(default=None, ge=0.0)
    """Shortest uv distance used (wavelengths); None: all."""
    uv_max_lambda: float | None = Field(default=None, gt=0.0)
    """Longest uv distance used (wavelengths); None: all."""
    channels_out: int = Field(default=1, ge=1)
    """Output channels; >1 joins them in deconvolution (WSClean ``-channels-out N
    -join-channels``, the MFS image is used). tclean supports 1 only."""
    data_column: Literal["auto", "DATA", "CORRECTED_DATA"] = "auto"
    """Column imaged. ``auto``: the column named by the MS's calibration record
    (``DSA_STREAM_CALIBRATION.json``: DATA after on-the-fly calibration, CORRECTED_DATA
    after applycal), else CORRECTED_DATA when it exists, else DATA."""
    pol: Literal["I"] = "I"
    """Stokes parameter imaged."""
    threads: int | None = Field(default=None, ge=1)
    """Compute threads (WSClean ``-j``, tclean ``OMP_NUM_THREADS``); None: all cores."""
    memory_gb: float | None = Field(default=None, gt=0.0)
    """WSClean ``-abs-mem`` (GB); None: no limit. Not used by tclean."""
    wsclean_gridder: Literal["wstacking", "wgridder"] = "wgridder"
    """WSClean gridder: ``wgridder`` (``-use-wgridder``; for a 4.5 deg field with 2 km
    baselines it needs a quarter of w-stacking's memory and less time) or w-stacking."""
    tclean_gridder: Literal["standard", "wproject", "widefield"] = "wproject"
    """tclean gridder; ``wproject`` corrects the w-term (needed for 2 km baselines over
    degrees), ``standard`` ignores it."""
    tclean_wprojplanes: int = Field(default=-1)
    """tclean ``wprojplanes`` (-1: automatic)."""
    tclean_deconvolver: Literal["hogbom", "clark"] = "hogbom"
    """tclean minor-cycle algorithm."""
    restoring_beam: tuple[float, float, float] | None = None
    """Restoring beam (major FWHM arcsec, minor FWHM arcsec, PA deg); None: a Gaussian
    fitted to the PSF main lobe (the part above half maximum). Both backends' images are
    restored by us with it (``residual + model * beam``)."""
    pb_cutoff: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Pixels whose drift-averaged primary beam is below this are blank (NaN) in the
    primary-beam-corrected image."""
    pb_weighting: Literal["imaging", "natural", "flat"] = "imaging"
    """How integrations and channels are weighted in the drift- and band-averaged beam:
    ``imaging`` (the imaging weights of the chosen weighting and uv range, summed per
    integration and channel, i.e. as in the MFS image), ``natural`` (visibility weights
    of unflagged data), ``flat`` (every integration and channel alike)."""
    preview: bool = True
    """Write a PNG preview."""
    keep_backend_files: bool = False
    """Keep the imager's own products (psf, model, dirty, CASA images) in the work
    directory next to the products instead of deleting them."""
    timeout_s: float = Field(default=2700.0, gt=0.0)
    """Hard wall-clock limit of the imager run (s)."""
    wsclean_executable: str = "wsclean"
    """WSClean program (name on $PATH or absolute path)."""
    qa: QaOptions = QaOptions()
    """Image quality checks."""

    @field_validator("size_px")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"size_px must be even, got {value}")
        return value

    @field_validator("restoring_beam")
    @classmethod
    def _beam(cls, value: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if value is not None and not (value[0] >= value[1] > 0):
            raise ValueError("restoring_beam needs major >= minor > 0 (arcsec)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ImagingOptions:
        lo, hi = self.uv_min_lambda, self.uv_max_lambda
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"uv_min_lambda ({lo}) must be below uv_max_lambda ({hi})")
        if self.backend == "tclean" and self.channels_out != 1:
            raise ValueError("the tclean backend images one MFS channel (channels_out = 1)")
        return self

    def field_of_view_deg(self) -> float:
        """Image width on the sky (deg)."""
        return self.size_px * self.cell_arcsec / 3600.0

    def content_hash(self) -> str:
        """Hash of everything that changes the image (not how it is run or checked)."""
        doc = self.model_dump(
            mode="json",
            exclude={"threads", "memory_gb", "timeout_s", "preview", "keep_backend_files", "qa"},
        )
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


class ExpectedSource(BaseModel):
    """A source the image should show: from a catalogue, or from the simulator's truth."""

    model_config = _FROZEN

    name: str
    ra_deg: float = Field(ge=0.0, lt=360.0)
    """ICRS right ascension (deg)."""
    dec_deg: float = Field(ge=-90.0, le=90.0)
    """ICRS declination (deg)."""
    flux_jy: float = Field(gt=0.0)
    """Intrinsic (not beam-attenuated) flux density at ``ref_freq_hz`` (Jy)."""
    ref_freq_hz: float = Field(default=1.4e9, gt=0.0)
    """Frequency of ``flux_jy`` (Hz)."""
    spectral_index: float = 0.0
    """alpha in S proportional to nu**alpha."""

    def flux_at(self, freq_hz: float) -> float:
        """Intrinsic flux density at ``freq_hz`` (Jy)."""
        return self.flux_jy * (freq_hz / self.ref_freq_hz) ** self.spectral_index


class CalibrationRecord(BaseModel):
    """A calibration table applied to the imaged data, with the time it was solved on."""

    model_config = _FROZEN

    path: str
    """Table path as recorded."""
    type: str = ""
    """CASA VisCal type (``B Jones``, ``G Jones``) when known."""
    obs_start_mjd: float | None = None
    """First solution time (MJD, UTC): the observation the table was solved on."""
    obs_end_mjd: float | None = None
    """Last solution time (MJD, UTC)."""
    set_name: str | None = None
    """Name of the calibration set (``<calibrator group key>_<calibrator>``) when known."""
    source: Literal["given", "ms-calibration-record", "ms-manifest", "ms-history"] = "given"
    """Where the record comes from."""


class RestoringBeam(BaseModel):
    """Restoring beam of the image (Gaussian FWHM)."""

    model_config = _FROZEN

    bmaj_arcsec: float
    bmin_arcsec: float
    bpa_deg: float

    def geometric_mean_arcsec(self) -> float:
        """sqrt(bmaj * bmin) (arcsec)."""
        return math.sqrt(self.bmaj_arcsec * self.bmin_arcsec)


class SourceMeasurement(BaseModel):
    """One expected source measured in the image."""

    model_config = _FROZEN

    name: str
    ra_deg: float
    dec_deg: float
    expected_flux_jy: float
    """Intrinsic flux density at the image's reference frequency (Jy)."""
    pb_response: float
    """Drift- and band-averaged primary beam at the expected position."""
    predicted_snr: float
    """expected_flux_jy * pb_response / rms."""
    found: bool
    """A local maximum was found within the match radius."""
    checked: bool
    """The source enters the flux/position checks (found or not, predicted SNR high)."""
    measured_flux_jy: float | None = None
    """Primary-beam-corrected flux used by the checks (``QaOptions.flux_measure``)."""
    peak_flux_jy: float | None = None
    """Primary-beam-corrected peak of the restored image, fitted to sub-pixel precision
    (Jy/beam = Jy for a point source). A source between pixels has its clean components
    spread over neighbouring pixels, which lowers the restored peak (up to ~4 % at 6.6
    pixels per beam minor axis when the source sits at a pixel corner)."""
    psf_flux_jy: float | None = None
    """Primary-beam-corrected point-source flux from a fit of the PSF: the amplitude of
    the PSF, shifted to the fitted sub-pixel position, fitted over its main lobe to the
    local dirty image rebuilt as residual + (nearby clean components * PSF) (Jy). Free of
    the pixelization of the components and of how clean split the source."""
    component_flux_jy: float | None = None
    """Primary-beam-corrected point-source flux from the clean components: the model
    flux within the match radius plus the residual at the source (Jy). Free of the
    pixelization loss of the peak; meaningful for unresolved, unconfused sources."""
    apparent_peak_jy: float | None = None
    """Peak in the uncorrected image (Jy/beam)."""
    measured_ra_deg: float | None = None
    measured_dec_deg: float | None = None
    offset_arcsec: float | None = None
    offset_beams: float | None = None
    """Offset / geometric-mean beam FWHM."""
    flux_ratio: float | None = None
    """measured_flux_jy / expected_flux_jy."""
    snr: float | None = None
    """apparent_peak_jy / rms."""


class QaCheck(BaseModel):
    """One QA criterion."""

    model_config = _FROZEN

    name: str
    status: Literal["pass", "fail", "skipped"]
    value: float | None = None
    limit: float | None = None
    detail: str = ""


class QaReport(BaseModel):
    """Image quality metrics and the pass/fail verdict."""

    model_config = _FROZEN

    rms_jy: float
    """Robust off-source rms of the image inside the primary-beam cutoff (1.4826 MAD,
    bright pixels and expected sources masked) (Jy/beam)."""
    residual_rms_jy: float | None
    """The same on the residual image (Jy/beam)."""
    peak_jy: float
    """Largest pixel of the image (Jy/beam, not primary-beam corrected)."""
    peak_ra_deg: float
    peak_dec_deg: float
    dynamic_range: float
    """peak_jy / rms_jy."""
    masked_fraction: float
    """Fraction of the in-beam pixels excluded from the rms."""
    beam: RestoringBeam
    sources: tuple[SourceMeasurement, ...] = ()
    n_checked: int = 0
    flux_ratio_median: float | None = None
    position_offset_median_beams: float | None = None
    checks: tuple[QaCheck, ...] = ()
    passed: bool = True

    def failures(self) -> list[str]:
        """Names of the failed checks."""
        return [c.name for c in self.checks if c.status == "fail"]


class ImageProducts(BaseModel):
    """Files written by the imaging stage (all FITS share one 2-D celestial grid)."""

    model_config = _FROZEN

    image: Path
    """Restored image, not primary-beam corrected (Jy/beam)."""
    residual: Path
    """Residual image (Jy/beam)."""
    pb: Path
    """Drift- and band-averaged primary beam (dimensionless, 1 at the peak response)."""
    pbcor: Path
    """image / pb where pb >= pb_cutoff, NaN elsewhere (Jy/beam)."""
    preview: Path | None
    """PNG preview."""
    summary: Path
    """JSON dump of the :class:`ImagingResult` (written last)."""


class ImagingResult(BaseModel):
    """What :func:`~dsa_stream.imaging.image_ms` produced."""

    model_config = _FROZEN

    ms_path: Path
    backend: Backend
    backend_version: str
    products: ImageProducts
    group_key: str | None
    """Observation group key (start time from the data)."""
    time_start_mjd: float
    time_end_mjd: float
    ref_freq_hz: float
    """Reference frequency of the MFS image (the imager's band centre)."""
    eff_freq_hz: float
    """Imaging-weighted mean frequency."""
    phase_centre_deg: tuple[float, float]
    """ICRS (RA, Dec) of the image centre (deg, RA in [0, 360))."""
    pointing_mid_deg: tuple[float, float]
    """ICRS (RA, Dec) the dishes pointed at in the middle of the group (deg)."""
    shape: tuple[int, int]
    """(ny, nx) of every FITS product."""
    cell_arcsec: float
    beam: RestoringBeam
    qa: QaReport
    calibration: tuple[CalibrationRecord, ...] = ()
    command: tuple[str, ...] = ()
    """WSClean argv, or the tclean call as ``key=value`` strings."""
    options_hash: str
    config_hash: str | None = None
    software: dict[str, str | None] = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    timings_s: dict[str, float] = Field(default_factory=dict)
    """Wall time of each step (bookkeeping)."""
