"""Options and results of the conversion stage (frozen pydantic models)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dsa_stream import instrument

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

#: How a post-conversion check that needs an optional tool behaves.
CheckPolicy = Literal["require", "warn", "off"]
#: What to do when the destination MS already exists.
ExistingPolicy = Literal["adopt", "replace", "fail"]


class ValidationOptions(BaseModel):
    """Post-conversion checks. Every failure raises :class:`ConversionError`."""

    model_config = _FROZEN

    uvw_tolerance_m: float = Field(default=1e-3, gt=0.0)
    """Largest allowed |UVW| - baseline length and largest allowed difference between the
    MS UVW and UVW recomputed from the ANTENNA positions and the FIELD direction (m)."""
    centre_tolerance_arcsec: float = Field(default=1.0, gt=0.0)
    """Largest allowed offset of a meridian centre from apparent (LST, Dec) (arcsec)."""
    drift_rate_tolerance: float = Field(default=0.02, gt=0.0, lt=1.0)
    """Relative tolerance of the separation of consecutive meridian centres against
    15.041 deg/h x dt x cos(Dec)."""
    casatools: CheckPolicy = "require"
    """Open the MS with casatools in a child process (casatools never shares our process
    with python-casacore). ``warn``: a failure to *run* the check only warns."""
    casacore35: CheckPolicy = "warn"
    """Open the MS with the casacore 3.5 that Debian's WSClean links, through
    ``legacy_python`` (python3-casacore). ``warn``: a missing interpreter or module is a
    warning recorded in the result; ``require``: it is an error. An MS that this
    casacore cannot read is an error under both."""
    legacy_python: Path = Path("/usr/bin/python3")
    """Interpreter that has Debian's python3-casacore (casacore 3.5)."""
    timeout_s: float = Field(default=300.0, gt=0.0)
    """Time limit of each child-process check (s)."""


class ConvertOptions(BaseModel):
    """How to turn one group of subband files into a Measurement Set."""

    model_config = _FROZEN

    mode: Literal["midpoint", "fields", "icrs"] = "midpoint"
    """midpoint: rephase every integration to one centre, the ICRS position of apparent
    (LST at the group mid-time, pointing Dec) - what WSClean and single-field calibration
    need; fields: no rephasing, one FIELD per integration at its meridian centre; icrs:
    rephase to ``phase_center_deg`` (e.g. a calibrator)."""
    phase_center_deg: tuple[float, float] | None = None
    """ICRS (RA, Dec) in degrees for mode ``icrs``."""
    phase_center_name: str | None = None
    """FIELD name (default: ``meridian_mid`` / ``meridian_tNN`` / ``icrs_centre``)."""
    channel_average: int = Field(default=1, ge=1)
    """Average this many adjacent channels (flag-aware); must divide the channels of a
    subband (48 for real data)."""
    apply_tables: tuple[Path, ...] = ()
    """CASA bandpass (B) and gain (G) tables applied while converting (DATA is then
    calibrated: V / (g_a1 conj(g_a2)), nearest solution in time, per channel for B)."""
    weight_spectrum: bool = False
    """Write WEIGHT_SPECTRUM (DSA-110 nsamples are uniform, so it is off by default)."""
    flag_autocorrelations: bool = True
    """Flag autocorrelation rows (they stay in the MS)."""
    expected_subbands: int = Field(default=instrument.N_SUBBANDS, ge=1, le=instrument.N_SUBBANDS)
    """Subbands of a complete group; the output always spans all of them, missing ones
    are flagged."""
    rows_per_block: int = Field(default=0, ge=0)
    """Rows written per block (0: chosen from the data size, ~256 MB of DATA per block)."""
    read_threads: int = Field(default=2, ge=1, le=16)
    """Threads reading and rephasing subband files."""
    checksum_inputs: bool = True
    """Record a full xxh3 checksum of every input file in the manifest (else name, size
    and header times only)."""
    on_existing: ExistingPolicy = "adopt"
    """Destination exists: adopt it when its manifest matches and it validates (else
    quarantine it and convert again); replace: always quarantine and convert; fail: raise."""
    validation: ValidationOptions = ValidationOptions()
    """Post-conversion checks."""

    @field_validator("phase_center_deg")
    @classmethod
    def _check_centre(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is None:
            return None
        ra, dec = value
        if not (0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0):
            raise ValueError(f"phase centre out of range: RA {ra}, Dec {dec} (deg)")
        return (float(ra), float(dec))

    @model_validator(mode="after")
    def _check_mode(self) -> ConvertOptions:
        if (self.mode == "icrs") != (self.phase_center_deg is not None):
            raise ValueError("phase_center_deg is required with mode 'icrs' and only then")
        if instrument.N_CHAN_PER_SUBBAND % self.channel_average:
            raise ValueError(
                f"channel_average must divide {instrument.N_CHAN_PER_SUBBAND}, "
                f"got {self.channel_average}"
            )
        return self

    def content_hash(self) -> str:
        """Hash of everything that changes the MS contents (not of how it is checked)."""
        doc = self.model_dump(
            mode="json",
            exclude={"read_threads", "on_existing", "validation", "rows_per_block"},
        )
        doc["apply_tables"] = [str(Path(p).resolve()) for p in self.apply_tables]
        text = json.dumps(doc, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class MeridianCentre(BaseModel):
    """The phase centre the correlator used for one integration (apparent HA = 0)."""

    model_config = _FROZEN

    time_mjd: float
    """Integration centre (MJD, UTC)."""
    lst_deg: float
    """Apparent local sidereal time = apparent RA of the centre (deg)."""
    ra_deg: float
    """ICRS RA of the centre (deg)."""
    dec_deg: float
    """ICRS Dec of the centre (deg)."""


class AppliedTable(BaseModel):
    """A calibration table applied while converting."""

    model_config = _FROZEN

    path: Path
    type: str
    """CASA ``VisCal`` type, e.g. ``B Jones`` or ``G Jones``."""
    n_solutions: int
    """Solution rows in the table."""
    solution_times_mjd: tuple[float, ...]
    """Distinct solution times (MJD)."""


class CheckRecord(BaseModel):
    """Outcome of one post-conversion check."""

    model_config = _FROZEN

    name: str
    status: Literal["ok", "skipped", "warning"]
    detail: str = ""


class ConvertResult(BaseModel):
    """What :func:`~dsa_stream.conversion.convert_group` produced (or adopted)."""

    model_config = _FROZEN

    ms_path: Path
    adopted: bool
    """True when an existing, matching and valid MS was kept without rewriting."""
    quarantined: Path | None = None
    """Where a previous, unusable MS at the destination was moved."""
    mode: str
    phase_center_name: str
    phase_center_deg: tuple[float, float] | None
    """ICRS (RA, Dec) of the single phase centre; None in mode ``fields``."""
    pointing_dec_deg: float
    """Apparent pointing Dec from the files (deg)."""
    meridian_centres: tuple[MeridianCentre, ...]
    """The per-integration centres of the input (also in the MS subtable
    ``DSA_MERIDIAN_CENTRES``)."""
    input_files: tuple[Path, ...]
    subbands_present: tuple[int, ...]
    subbands_missing: tuple[int, ...]
    """Subbands absent from the group; their channels are in the MS, flagged."""
    n_rows: int
    n_times: int
    n_baselines: int
    n_antennas_data: int
    n_channels: int
    channel_width_hz: float
    freq_min_hz: float
    freq_max_hz: float
    channel_average: int
    time_start_mjd: float
    """Start of the first integration (MJD, UTC)."""
    time_end_mjd: float
    """End of the last integration (MJD, UTC)."""
    integration_s: float
    applied_tables: tuple[AppliedTable, ...] = ()
    checks: tuple[CheckRecord, ...] = ()
    warnings: tuple[str, ...] = ()
    size_bytes: int = 0
    options_hash: str = ""
    software: dict[str, str | None] = Field(default_factory=dict)
    timings_s: dict[str, float] = Field(default_factory=dict)
    """Wall time of each step (bookkeeping)."""
