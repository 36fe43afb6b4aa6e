"""Options of the simulator: what night to simulate, with which sky and instrument errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dsa_stream import instrument

#: Pointing Dec used when neither a Dec nor a calibrator is given: the most common real
#: DSA-110 declination in 2025 (reference-pipelines.md section 1.4).
DEFAULT_DEC_DEG = 54.5734
#: Night start used when neither a start nor a calibrator is given.
DEFAULT_START = dt.datetime(2025, 10, 2, 0, 0, 0, tzinfo=dt.UTC)
#: Date whose calibrator transit is simulated when only a calibrator is given.
DEFAULT_DATE = dt.date(2025, 10, 2)
#: Number of active stations in 2026: every station except instrument.INACTIVE_STATIONS.
N_ACTIVE_REAL = instrument.N_STATIONS - len(instrument.INACTIVE_STATIONS)

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class PointSourceSpec(BaseModel):
    """A point source given explicitly (ICRS position, power-law spectrum)."""

    model_config = _FROZEN

    name: str
    """Source name, unique in the simulation."""
    ra_deg: float = Field(ge=0.0, lt=360.0)
    """ICRS right ascension (deg)."""
    dec_deg: float = Field(ge=-90.0, le=90.0)
    """ICRS declination (deg)."""
    flux_jy: float = Field(gt=0.0)
    """Flux density at 1.4 GHz (Jy)."""
    spectral_index: float = 0.0
    """Spectral index alpha, S proportional to nu**alpha."""


class SkyOptions(BaseModel):
    """The random point-source sky drawn from the seed.

    Sources are drawn independently in 1 deg x 1 deg (RA, Dec) cells with a random
    generator seeded by (seed, cell), so the sky of a seed does not depend on which part
    of it a night looks at. Only cells overlapping the strip swept by the night are drawn.
    """

    model_config = _FROZEN

    density_per_deg2: float = Field(default=0.7, ge=0.0)
    """Mean number of sources per square degree (Poisson)."""
    flux_min_jy: float = Field(default=0.05, gt=0.0)
    """Smallest 1.4 GHz flux density (Jy)."""
    flux_max_jy: float = Field(default=5.0, gt=0.0)
    """Largest 1.4 GHz flux density (Jy)."""
    flux_power_law_index: float = -1.6
    """Differential source counts dN/dS proportional to S**index."""
    spectral_index_mean: float = -0.7
    """Mean of the Gaussian spectral-index distribution."""
    spectral_index_std: float = Field(default=0.2, ge=0.0)
    """Standard deviation of the spectral-index distribution."""
    strip_half_width_deg: float = Field(default=3.5, gt=0.0, le=30.0)
    """Half width in Dec of the strip around the pointing; 3.5 deg holds the main lobe
    (first null 3.4 deg at 1311 MHz). Sidelobe sources outside it are not modelled."""
    extra_sources: tuple[PointSourceSpec, ...] = ()
    """Sources added to the random ones (for tests and demonstrations)."""

    @model_validator(mode="after")
    def _check_flux_range(self) -> SkyOptions:
        if self.flux_max_jy < self.flux_min_jy:
            raise ValueError("flux_max_jy must be >= flux_min_jy")
        return self


class CorruptionOptions(BaseModel):
    """Instrumental corruption: gains, bandpasses and thermal noise."""

    model_config = _FROZEN

    gains: bool = True
    """Apply per-antenna, per-polarization complex gains g (constant over the night)."""
    gain_amplitude_rms: float = Field(default=0.1, ge=0.0, le=0.5)
    """Fractional rms scatter of |g| around 1 (the phase is uniform in [-pi, pi))."""
    bandpass: bool = True
    """Apply per-antenna, per-polarization bandpasses B(nu)."""
    delay_rms_ns: float = Field(default=3.0, ge=0.0)
    """Rms residual delay of the bandpass (ns)."""
    ripple_amplitude: float = Field(default=0.05, ge=0.0, lt=0.5)
    """Fractional amplitude of the sinusoidal bandpass ripple."""
    rolloff_depth: float = Field(default=0.15, ge=0.0, lt=1.0)
    """Fractional gain loss at the subband edges (polyphase filter-bank roll-off)."""
    noise: bool = True
    """Add thermal noise."""
    sefd_jy: float = Field(default=instrument.SEFD_JY, gt=0.0)
    """System equivalent flux density of one dish (Jy)."""


class WriterOptions(BaseModel):
    """How files reach the disk, imitating the correlator in time."""

    model_config = _FROZEN

    mode: Literal["direct", "rename", "slow"] = "direct"
    """direct: write the final name at once; rename: write ``.<name>.tmp`` then rename;
    slow: write the final name in ``slow_chunks`` appends spread over ``write_seconds``."""
    cadence_s: float | None = Field(default=None, gt=0.0)
    """Real-time spacing of successive observations (s); None writes as fast as possible."""
    write_seconds: float = Field(default=10.0, ge=0.0)
    """Duration of one observation's writing in slow mode (s)."""
    slow_chunks: int = Field(default=4, ge=1, le=instrument.N_INTEGRATIONS)
    """Number of appends of a file in slow mode (divides the 24 integrations)."""


class SimulationOptions(BaseModel):
    """Everything that defines a simulated night; the same options and seed give the same bytes."""

    model_config = _FROZEN

    out_dir: Path
    """Directory receiving the subband files and ``truth.json``."""
    n_groups: int = Field(default=1, ge=1, le=1000)
    """Number of consecutive observations (groups of 16 subband files)."""
    start: dt.datetime | None = None
    """Start of the first observation (UTC); None: from the calibrator transit, else
    2025-10-02T00:00:00."""
    date: dt.date = DEFAULT_DATE
    """UTC date of the calibrator transit used when ``start`` is None."""
    antennas: int = Field(default=N_ACTIVE_REAL, ge=3, le=N_ACTIVE_REAL)
    """Number of active stations (96 is the real active set)."""
    seed: int = Field(default=0, ge=0)
    """Seed of every random draw (sky, gains, noise, file-name jitter)."""
    channels_per_subband: int = instrument.N_CHAN_PER_SUBBAND
    """Channels per subband; must divide 48 (the subband keeps its edges)."""
    subbands: tuple[int, ...] = tuple(range(instrument.N_SUBBANDS))
    """Subbands to write (all 16 for real-looking groups)."""
    dec_deg: float | None = Field(default=None, gt=-50.0, le=90.0)
    """Apparent pointing Dec (deg); None: the calibrator's apparent Dec, else 54.5734."""
    calibrator: str | None = None
    """Catalogue calibrator to put in the sky (name or alias)."""
    calibrator_group: int = Field(default=0, ge=0)
    """Group in whose middle the calibrator transits when ``start`` is None."""
    gap_minutes: float = Field(default=0.0, ge=0.0)
    """Gap between the end of one observation and the start of the next (min)."""
    primary_beam: bool = True
    """Attenuate every source by the Airy primary beam."""
    min_beam_response: float = Field(default=1e-4, ge=0.0, lt=1.0)
    """Sources whose beam response stays below this over a group are skipped."""
    jitter_max_s: int = Field(default=4, ge=0, le=30)
    """File-name timestamps are the observation start plus 0..jitter_max_s s (drawn per
    subband), truncated to whole seconds; time_array is the same in all 16 files."""
    sky: SkyOptions = SkyOptions()
    """Random sky and explicit sources."""
    corruption: CorruptionOptions = CorruptionOptions()
    """Gains, bandpasses and noise."""
    writer: WriterOptions = WriterOptions()
    """Write mode and pacing."""
    overwrite: bool = False
    """Replace existing files instead of failing."""

    @field_validator("start")
    @classmethod
    def _utc_start(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    @field_validator("channels_per_subband")
    @classmethod
    def _divides_48(cls, value: int) -> int:
        if value < 1 or instrument.N_CHAN_PER_SUBBAND % value:
            raise ValueError(f"channels per subband must divide {instrument.N_CHAN_PER_SUBBAND}")
        return value

    @field_validator("subbands")
    @classmethod
    def _valid_subbands(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("subbands must be a non-empty list without repetitions")
        if any(not 0 <= sb < instrument.N_SUBBANDS for sb in value):
            raise ValueError(f"subbands must be in 0..{instrument.N_SUBBANDS - 1}")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _check_groups(self) -> SimulationOptions:
        if self.calibrator_group >= self.n_groups:
            raise ValueError(
                f"calibrator_group {self.calibrator_group} is not one of the {self.n_groups} groups"
            )
        return self
