"""Options of the calibration stage (frozen pydantic models).

Every number that decides whether a group is a calibrator group, how the solve runs,
when a table set passes QA, how long it stays valid and how a target group picks one
is here, with its reason. ``dsa_stream.config.CalibrateConfig`` (the ``calibrate:``
section of the site configuration) maps onto these models in the pipeline layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dsa_stream import instrument
from dsa_stream.config import CalibrateConfig

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

#: Centre of the DSA-110 band (Hz): the reference frequency of transit responses.
BAND_CENTRE_HZ = 0.5 * (instrument.BAND_LOW_HZ + instrument.BAND_HIGH_HZ)

#: Table types of a set, in apply order.
TableType = Literal["bandpass", "gain"]
TABLE_TYPES: tuple[TableType, ...] = ("bandpass", "gain")
#: What a target group does when no table set is valid for it.
NoCalibrationPolicy = Literal["wait", "image-uncalibrated"]
#: Flaggers run before the solve.
Flagger = Literal["auto", "aoflagger", "casa", "mad", "none"]


class TransitOptions(BaseModel):
    """When a catalogue source makes a group a calibrator group."""

    model_config = _FROZEN

    min_apparent_flux_jy: float = Field(default=2.0, ge=0.0)
    """Smallest flux x peak beam response at ``ref_freq_hz`` (Jy). 2 Jy gives a
    per-channel, per-antenna bandpass SNR of about 40 at full size (96 antennas, 244 kHz,
    24 x 12.9 s, SEFD 6500 Jy), i.e. about 1.5 deg of phase noise."""
    min_response: float = Field(default=0.3, ge=0.0, le=1.0)
    """Smallest peak beam response (the reference pipelines' acceptance: PB >= 0.3)."""
    ref_freq_hz: float = Field(default=BAND_CENTRE_HZ, gt=0.0)
    """Frequency of the fluxes and responses used for the decision (Hz)."""
    dec_search_deg: float = Field(default=6.0, gt=0.0, le=90.0)
    """Only sources within this Dec distance of the pointing are examined (the beam's
    first null is 3.4 deg at the bottom of the band)."""
    calibrators: tuple[str, ...] = ()
    """Restrict the search to these catalogue names (empty: the whole catalogue)."""


class FlagOptions(BaseModel):
    """Flagging of the calibrator MS before the solve."""

    model_config = _FROZEN

    flagger: Flagger = "auto"
    """auto: AOFlagger when its executable is installed, else the MAD clip; casa: CASA
    tfcrop + rflag (child process); mad: the numpy MAD clip; none. Zeros, non-finite
    values, autocorrelations and dead antennas are flagged in every case."""
    mad_threshold: float = Field(default=7.0, gt=0.0)
    """Clip |data - model x median gain| beyond this many robust sigmas (per channel and
    correlation; the reference pipelines' 7 sigma)."""
    dead_antenna_flagged: float = Field(default=0.95, gt=0.0, le=1.0)
    """An antenna with more of its cross-correlations flagged than this is flagged."""
    dead_antenna_amplitude: float = Field(default=0.1, ge=0.0, lt=1.0)
    """An antenna whose median |data| / model is below this fraction of the array median
    is dead (no signal) and flagged."""
    aoflagger_executable: str = "aoflagger"
    """AOFlagger program (looked up on PATH)."""
    aoflagger_strategy: Path | None = None
    """Lua strategy file (None: AOFlagger's default strategy)."""
    timeout_s: float = Field(default=900.0, gt=0.0)
    """Time limit of an external flagger (s)."""


class QaThresholds(BaseModel):
    """When a solved table set is good enough to be applied (reference-pipelines §4.2)."""

    model_config = _FROZEN

    max_bandpass_flagged: float = Field(default=0.2, ge=0.0, le=1.0)
    """Largest flagged fraction of bandpass solutions (above 20% is 'critical')."""
    warn_bandpass_flagged: float = Field(default=0.05, ge=0.0, le=1.0)
    """Flagged bandpass fraction above which a warning is recorded (target < 3%)."""
    max_gain_flagged: float = Field(default=0.3, ge=0.0, le=1.0)
    """Largest flagged fraction of gain solutions."""
    min_snr: float = Field(default=3.0, ge=0.0)
    """Smallest median SNR of the bandpass and of the gain solutions."""
    warn_snr: float = Field(default=10.0, ge=0.0)
    """Median SNR below which a warning is recorded."""
    min_antennas: int = Field(default=10, ge=1)
    """Fewest antennas with unflagged bandpass and gain solutions."""
    outlier_mad: float = Field(default=5.0, gt=0.0)
    """An antenna whose gain amplitude is this many robust sigmas from the array median is
    an outlier (reported)."""
    max_outlier_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    """Largest fraction of outlier antennas."""
    max_phase_noise_deg: float = Field(default=20.0, gt=0.0)
    """Largest median channel-to-channel bandpass phase noise over antennas (deg)."""


class SolveParameters(BaseModel):
    """Parameters of the CASA solve chain (G0 phase -> B bandpass -> G gains)."""

    model_config = _FROZEN

    refant: tuple[str, ...] = ()
    """Reference antennas by name, first preferred (empty: chosen automatically)."""
    prebandpass_solint: str = "60s"
    """Solution interval of the phase-only solve used during the bandpass solve only."""
    prebandpass_channel_fraction: float = Field(default=0.2, gt=0.0, le=1.0)
    """Central fraction of the channels used by the pre-bandpass phase solve (a residual
    delay of a few ns winds the phase by radians across the band)."""
    bandpass_minsnr: float = Field(default=5.0, ge=0.0)
    """Minimum SNR of a bandpass solution (5, not CASA's default 3: reference bug)."""
    bandpass_fillgaps: int = Field(default=3, ge=0)
    """Flagged bandpass channels interpolated over (up to this many in a row)."""
    bandpass_solnorm: bool = True
    """Normalise the bandpass (the flux scale is carried by the gains)."""
    gain_solint: str = "inf"
    """Solution interval of the amplitude + phase gains (inf: one per group)."""
    gain_minsnr: float = Field(default=3.0, ge=0.0)
    """Minimum SNR of a gain solution."""
    minblperant: int = Field(default=4, ge=1)
    """Baselines an antenna needs for a solution."""
    uvrange: str = ""
    """CASA uvrange selection of the solves (e.g. '>1klambda'; empty: all baselines)."""

    @field_validator("prebandpass_solint", "gain_solint")
    @classmethod
    def _solint(cls, value: str) -> str:
        text = value.strip()
        if text not in ("inf", "int") and not (text.endswith(("s", "min")) and text[0].isdigit()):
            raise ValueError(f"solution interval must be 'inf', 'int' or like '60s': {value!r}")
        return text


class ValidityOptions(BaseModel):
    """Validity windows in observation time, centred on the calibrator transit."""

    model_config = _FROZEN

    bandpass_hours: float = Field(default=12.0, gt=0.0, le=72.0)
    """Half width of a bandpass table's window (h). 12 h tiles the whole day with one
    calibrator transit per day per Dec strip (transits are 23.93 h apart)."""
    gain_hours: float = Field(default=12.0, gt=0.0, le=72.0)
    """Half width of a gain table's window (h). Shorter is more accurate when several
    calibrators transit per strip and day; with one, shorter windows leave groups
    waiting (see docs/calibration.md)."""

    def half_width_hours(self, table_type: TableType) -> float:
        """Half width of the window of one table type (h)."""
        return self.bandpass_hours if table_type == "bandpass" else self.gain_hours


class SelectionOptions(BaseModel):
    """How a target group picks its table set."""

    model_config = _FROZEN

    dec_tolerance_deg: float = Field(default=1.0, gt=0.0)
    """Largest |Dec(group) - Dec(solve)| (deg). Strips are degrees apart; applying another
    strip's tables gave fluxes x0.06 in the reference pipelines."""
    required_types: tuple[TableType, ...] = TABLE_TYPES
    """Table types a set must have, all valid at the group's observation time."""
    policy: NoCalibrationPolicy = "wait"
    """No valid set: wait (the group waits in ``awaiting_calibration``) or image
    uncalibrated (flagged as such in the registry and the products)."""


class SolveOptions(BaseModel):
    """Everything :func:`~dsa_stream.calibration.solve.solve_group` needs."""

    model_config = _FROZEN

    calibrator: str | None = None
    """Solve on this catalogue source (None: the best usable transit of the group)."""
    transit: TransitOptions = TransitOptions()
    flagging: FlagOptions = FlagOptions()
    parameters: SolveParameters = SolveParameters()
    qa: QaThresholds = QaThresholds()
    validity: ValidityOptions = ValidityOptions()
    channel_average: int = Field(default=1, ge=1)
    """Channels averaged when converting the calibrator group (the tables then have the
    averaged channels, so targets must be averaged the same way)."""
    plots: bool = True
    """Write PNG plots of the bandpass and the gains."""
    timeout_s: float = Field(default=1800.0, gt=0.0)
    """Time limit of each CASA child process (s)."""
    convert_timeout_s: float = Field(default=1200.0, gt=0.0)
    """Time limit of the calibrator conversion's own checks (s)."""


class ApplyOptions(BaseModel):
    """How tables are applied to a target MS."""

    model_config = _FROZEN

    interp: Literal["nearest", "linear"] = "nearest"
    """Interpolation in time (nearest equals the on-the-fly application)."""
    calwt: bool = False
    """Scale the weights by the gains (False: as the on-the-fly application)."""
    timeout_s: float = Field(default=1200.0, gt=0.0)
    """Time limit of the applycal child process (s)."""


# -- the ``calibrate:`` configuration section -> stage options ---------------------------


def solve_options(cfg: CalibrateConfig) -> SolveOptions:
    """The stage's solve options from the ``calibrate:`` configuration section."""
    return SolveOptions(
        transit=TransitOptions(
            min_apparent_flux_jy=cfg.min_apparent_flux_jy,
            min_response=cfg.min_beam_response,
            calibrators=cfg.calibrators,
        ),
        flagging=FlagOptions(flagger=cfg.flagger, mad_threshold=cfg.mad_threshold),
        parameters=SolveParameters(
            refant=cfg.refant,
            prebandpass_solint=cfg.prebandpass_solint,
            bandpass_minsnr=cfg.bandpass_minsnr,
            bandpass_fillgaps=cfg.bandpass_fillgaps,
            gain_solint=cfg.gain_solint,
            gain_minsnr=cfg.gain_minsnr,
            uvrange=cfg.uvrange,
        ),
        qa=QaThresholds(**cfg.qa.model_dump()),
        validity=validity_options(cfg),
        channel_average=cfg.channel_average,
        plots=cfg.plots,
        timeout_s=cfg.solve_timeout_s,
    )


def validity_options(cfg: CalibrateConfig) -> ValidityOptions:
    """Validity windows from the configuration."""
    return ValidityOptions(
        bandpass_hours=cfg.bandpass_validity_hours, gain_hours=cfg.gain_validity_hours
    )


def selection_options(cfg: CalibrateConfig) -> SelectionOptions:
    """Selection rules from the configuration."""
    return SelectionOptions(
        dec_tolerance_deg=cfg.dec_tolerance_deg, policy=cfg.no_calibration_policy
    )


def apply_options(cfg: CalibrateConfig) -> ApplyOptions:
    """Applycal options from the configuration."""
    return ApplyOptions(timeout_s=cfg.apply_timeout_s)
