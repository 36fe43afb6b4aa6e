"""``truth.json``: what the simulator put into the data, and a reader that re-evaluates it.

The file is the JSON dump of :class:`SimulationTruth`. Gains and bandpasses are stored
as parameters (:class:`~dsa_stream.simulate.gains.InstrumentModel`), so
``load_truth(path).bandpass(freqs)`` reproduces the injected B(nu) exactly at any
frequency; no per-channel arrays are stored.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, ValidationError

from dsa_stream import instrument
from dsa_stream.beam import airy_power
from dsa_stream.calibration.catalog import FluxModel
from dsa_stream.exceptions import SimulationError
from dsa_stream.simulate.gains import InstrumentModel
from dsa_stream.simulate.sky import SkySource

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

TRUTH_FORMAT = "dsa-stream-simulation-truth"
TRUTH_FORMAT_VERSION = 1

#: The conventions, verbatim in every truth file.
CONVENTIONS = {
    "baseline": "rows have ant_1 <= ant_2 (antenna number = station - 1); "
    "uvw = x(ant_2) - x(ant_1) (pyuvdata)",
    "model": "V(b,nu,t) = sum_s S_s(nu) A_s(t,nu) exp(+2 pi i (u l + v m + w (n-1)) nu / c), "
    "(l, m, n) of the source's apparent position relative to the apparent phase centre "
    "(HA=0, Dec=pointing) of integration t; A = Airy power beam",
    "polarization": "XX = YY = I (unpolarised; I = (XX + YY) / 2)",
    "corruption": "data(a1,a2,p,nu) = G_a1p(nu) conj(G_a2p(nu)) (V + noise), G = g B; "
    "gains constant over the night",
    "noise": "cross: complex Gaussian, sigma per real/imag part = SEFD / sqrt(2 dnu tau); "
    "auto: real, (SEFD + sum_s S_s A_s) (1 + N(0,1) / sqrt(dnu tau)), noise added before G",
    "units": "Jy; frequencies Hz; angles deg unless the name says rad; times JD/MJD UTC",
}


class StationTruth(BaseModel):
    """One station of the layout."""

    model_config = _FROZEN

    station: int
    """Station number DSA-nnn (1..117)."""
    antenna_number: int
    """Antenna number in the files (station - 1)."""
    active: bool
    """True when the station has data."""
    enu_m: tuple[float, float, float]
    """East, north, up from the array centre (m)."""
    rel_ecef_m: tuple[float, float, float]
    """ECEF position minus the array-centre ECEF position (m)."""


class GroupTruth(BaseModel):
    """One observation (group of subband files)."""

    model_config = _FROZEN

    index: int
    key: str
    """Group key, ``naming.group_key(observation start)``."""
    start_utc: str
    start_mjd: float
    mid_utc: str
    mid_mjd: float
    end_utc: str
    end_mjd: float
    time_jd: tuple[float, ...]
    """The 24 integration centres of ``time_array`` (JD)."""
    lst_rad: tuple[float, ...]
    """Apparent LST of each integration = apparent RA of its phase centre (rad)."""
    phase_centers_icrs_deg: tuple[tuple[float, float], ...]
    """ICRS (RA, Dec) of the meridian phase centre of each integration (deg)."""
    mid_phase_center_icrs_deg: tuple[float, float]
    """ICRS (RA, Dec) of the meridian phase centre at the group midpoint (deg)."""
    files: tuple[str, ...]
    """File names (jittered timestamps), in subband order."""
    subbands: tuple[int, ...]
    """Subband number of each file."""
    contains_calibrator_transit: bool
    """True when the calibrator transits during this observation."""
    modelled_sources: tuple[str, ...]
    """Sources included in the visibilities of this group (beam response above the
    simulator's ``min_beam_response`` at some time and frequency)."""


class CalibratorTruth(BaseModel):
    """The catalogue calibrator put into the sky."""

    model_config = _FROZEN

    name: str
    ra_deg: float
    dec_deg: float
    flux: FluxModel
    transit_utc: str
    """Meridian transit nearest to the night (UTC)."""
    transit_mjd: float
    transit_group: int | None
    """Index of the group containing the transit, or None."""
    apparent_dec_deg: float
    """Apparent Dec at transit (deg)."""
    closest_separation_deg: float
    """Smallest distance to the phase centre over the night (deg)."""


class SimulationTruth(BaseModel):
    """Everything needed to check a pipeline against the simulated night."""

    model_config = _FROZEN

    format: str = TRUTH_FORMAT
    format_version: int = TRUTH_FORMAT_VERSION
    simulator_version: str
    conventions: dict[str, str]
    options: dict[str, object]
    """The SimulationOptions, as JSON."""
    seed: int
    site: dict[str, object]
    """Latitude/longitude (deg), altitude (m), telescope and instrument names."""
    pointing_dec_app_deg: float
    """Apparent pointing Dec (= Header/extra_keywords/phase_center_dec) (deg)."""
    channels_per_subband: int
    channel_width_hz: float
    """Signed channel width as written (negative: descending)."""
    noise: dict[str, object]
    """enabled, sefd_jy, sigma_jy (per real/imag part of a cross-correlation)."""
    beam: dict[str, object]
    """model ('airy'), dish_diameter_m, applied, min_response."""
    stations: tuple[StationTruth, ...]
    active_stations: tuple[int, ...]
    instrument: InstrumentModel
    sources: tuple[SkySource, ...]
    calibrator: CalibratorTruth | None
    groups: tuple[GroupTruth, ...]

    def group(self, key_or_index: str | int) -> GroupTruth:
        """A group by key or index."""
        for g in self.groups:
            if key_or_index in (g.key, g.index):
                return g
        raise SimulationError(f"no group {key_or_index!r} in this simulation")

    def frequencies(self, subband: int) -> NDArray[np.float64]:
        """Channel centres (Hz) of a subband, in file order (descending)."""
        return instrument.subband_frequencies(subband, self.channels_per_subband)

    def gains(self) -> NDArray[np.complex128]:
        """G per active station and polarization, (n_active, 2)."""
        return self.instrument.complex_gains()

    def bandpass(self, freq_hz: ArrayLike) -> NDArray[np.complex128]:
        """B(nu) per active station, (n_active, n_freq, 2)."""
        return self.instrument.bandpass(freq_hz)

    def total_gain(self, freq_hz: ArrayLike) -> NDArray[np.complex128]:
        """G = g B per active station, (n_active, n_freq, 2)."""
        return self.instrument.total_gain(freq_hz)

    def source(self, name: str) -> SkySource:
        """A source by name."""
        for s in self.sources:
            if s.name == name:
                return s
        raise SimulationError(f"no source {name!r} in this simulation")

    def sources_in_field(
        self, group: str | int, min_response: float = 0.1, freq_hz: float = 1.4e9
    ) -> list[FieldSource]:
        """Sources the primary beam sees during a group, brightest apparent flux first.

        The response uses the separation from each integration's ICRS phase centre
        (accurate to arcseconds for sources within the beam).

        Args:
            group: Group key or index.
            min_response: Smallest peak beam response to include.
            freq_hz: Frequency of the fluxes and of the beam.
        """
        g = self.group(group)
        pc = np.radians(np.array(g.phase_centers_icrs_deg))
        mid_idx = len(pc) // 2
        out = []
        for src in self.sources:
            ra, dec = math.radians(src.ra_deg), math.radians(src.dec_deg)
            cos_sep = np.sin(dec) * np.sin(pc[:, 1]) + np.cos(dec) * np.cos(pc[:, 1]) * np.cos(
                ra - pc[:, 0]
            )
            theta = np.arccos(np.clip(cos_sep, -1.0, 1.0))
            applied = bool(self.beam.get("applied", True))
            resp = airy_power(theta, freq_hz) if applied else np.ones_like(theta)
            if resp.max() < min_response:
                continue
            flux = float(src.flux_jy(freq_hz))
            out.append(
                FieldSource(
                    name=src.name,
                    kind=src.kind,
                    ra_deg=src.ra_deg,
                    dec_deg=src.dec_deg,
                    flux_jy=flux,
                    peak_response=float(resp.max()),
                    mid_response=float(resp[mid_idx]),
                    peak_apparent_flux_jy=flux * float(resp.max()),
                    separation_mid_deg=math.degrees(float(theta[mid_idx])),
                )
            )
        return sorted(out, key=lambda s: -s.peak_apparent_flux_jy)


class FieldSource(BaseModel):
    """A source seen by a group, with its beam-weighted flux."""

    model_config = _FROZEN

    name: str
    kind: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    """Intrinsic flux density at the requested frequency (Jy)."""
    peak_response: float
    """Largest beam response during the group."""
    mid_response: float
    """Beam response at the middle integration."""
    peak_apparent_flux_jy: float
    """flux_jy * peak_response."""
    separation_mid_deg: float
    """Distance from the phase centre at the middle integration (deg)."""


def write_truth(path: Path, truth: SimulationTruth) -> None:
    """Write ``truth`` as indented JSON, atomically (temporary file + rename)."""
    path = Path(path)
    text = json.dumps(truth.model_dump(mode="json"), indent=1, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_truth(path: Path | str) -> SimulationTruth:
    """Read a ``truth.json`` written by the simulator.

    Raises:
        SimulationError: if the file is missing, not JSON, or not a truth file of this format.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SimulationError(f"cannot read truth file {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != TRUTH_FORMAT:
        raise SimulationError(f"{path} is not a dsa-stream simulation truth file")
    if doc.get("format_version") != TRUTH_FORMAT_VERSION:
        raise SimulationError(
            f"{path}: truth format version {doc.get('format_version')} is not supported"
        )
    try:
        return SimulationTruth.model_validate(doc)
    except ValidationError as exc:
        raise SimulationError(f"{path}: invalid truth file: {exc}") from exc
