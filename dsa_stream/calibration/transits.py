"""Which catalogue calibrators pass through the primary beam during a group, when, and how well.

For every catalogue source within ``dec_search_deg`` of the pointing:

* the meridian transit nearest to the group's middle (apparent hour angle zero,
  :func:`~dsa_stream.calibration.geometry.transit_mjd`);
* its distance from the pointing centre at each integration (ICRS meridian centres)
  and at closest approach: at a transit inside the group that is
  ``|Dec_apparent(source) - Dec_pointing|``, otherwise the smallest distance over
  the integrations;
* the Airy power response (4.65 m dish, :func:`dsa_stream.beam.airy_power`) at
  closest approach and averaged over the integrations, at the reference frequency
  and at both band edges.

A source is *usable* when its transit falls inside the group, its peak response is
at least ``min_response`` and flux x peak response is at least
``min_apparent_flux_jy``; a group with a usable source is a calibrator group, and the
usable source with the largest apparent flux is its calibrator.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict

from dsa_stream.beam import airy_power
from dsa_stream.calibration.catalog import Calibrator, get_calibrator, load_catalog
from dsa_stream.calibration.geometry import icrs_to_apparent, separation_rad, transit_mjd
from dsa_stream.calibration.observation import GroupObservation, mjd_to_datetime
from dsa_stream.calibration.options import TransitOptions
from dsa_stream.exceptions import CalibrationError

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
#: Sources whose response stays below this over the group are not reported.
REPORT_MIN_RESPONSE = 1e-3


class TransitInfo(BaseModel):
    """One catalogue source seen by one group."""

    model_config = _FROZEN

    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    """Catalogue flux density at the reference frequency (Jy)."""
    transit_mjd: float
    """Meridian transit nearest to the group's middle (MJD, UTC)."""
    transit_utc: str
    transit_in_group: bool
    closest_separation_deg: float
    """Distance from the pointing centre at closest approach within the group (deg)."""
    peak_response: float
    """Beam response at closest approach, reference frequency."""
    mean_response: float
    """Beam response averaged over the group's integrations, reference frequency."""
    peak_response_band_edges: tuple[float, float]
    """Peak response at the lowest and highest frequency of the band."""
    apparent_flux_jy: float
    """flux_jy x peak_response."""
    usable: bool
    reason: str
    """Why the source is not usable ('' when it is)."""


class TransitReport(BaseModel):
    """The transit search of one group."""

    model_config = _FROZEN

    start_utc: str
    end_utc: str
    start_mjd: float
    end_mjd: float
    pointing_dec_deg: float
    ref_freq_hz: float
    sources: tuple[TransitInfo, ...]
    """Sources the beam sees during the group, largest apparent flux first."""
    calibrator: str | None
    """The usable source with the largest apparent flux, if any."""

    @property
    def is_calibrator_group(self) -> bool:
        """True when a usable calibrator transits during the group."""
        return self.calibrator is not None

    def source(self, name: str) -> TransitInfo:
        """A reported source by name."""
        for s in self.sources:
            if s.name == name:
                return s
        raise CalibrationError(f"{name} is not seen by this group (not in the transit report)")


def _responses(
    cal: Calibrator, obs: GroupObservation, ref_hz: float
) -> tuple[float, float, float, float, float]:
    """Transit (MJD), closest distance (rad), peak and mean response at ref, in-group flag."""
    transit = transit_mjd(cal.ra_deg, cal.dec_deg, obs.mid_mjd)
    centres = np.radians(np.array(obs.centres_icrs_deg))
    theta = separation_rad(
        math.radians(cal.ra_deg), math.radians(cal.dec_deg), centres[:, 0], centres[:, 1]
    )
    inside = obs.start_mjd <= transit < obs.end_mjd
    if inside:
        _, dec_app = icrs_to_apparent(transit, math.radians(cal.ra_deg), math.radians(cal.dec_deg))
        closest = abs(float(dec_app[0]) - math.radians(obs.pointing_dec_deg))
    else:
        closest = float(theta.min())
    peak = float(airy_power(closest, ref_hz))
    mean = float(np.mean(airy_power(theta, ref_hz)))
    return transit, closest, peak, mean, float(inside)


def assess(cal: Calibrator, obs: GroupObservation, opts: TransitOptions) -> TransitInfo:
    """Transit time, closest approach and beam responses of one source for one group."""
    ref = opts.ref_freq_hz
    transit, closest, peak, mean, inside = _responses(cal, obs, ref)
    flux = float(cal.flux_jy(ref))
    edges = airy_power(closest, np.array([obs.freq_min_hz, obs.freq_max_hz]))
    apparent = flux * peak
    reasons = []
    if not inside:
        reasons.append("transit outside the group")
    if peak < opts.min_response:
        reasons.append(f"peak response {peak:.3f} < {opts.min_response}")
    if apparent < opts.min_apparent_flux_jy:
        reasons.append(f"apparent flux {apparent:.2f} Jy < {opts.min_apparent_flux_jy} Jy")
    return TransitInfo(
        name=cal.name,
        ra_deg=cal.ra_deg,
        dec_deg=cal.dec_deg,
        flux_jy=flux,
        transit_mjd=transit,
        transit_utc=mjd_to_datetime(transit).isoformat(timespec="milliseconds"),
        transit_in_group=bool(inside),
        closest_separation_deg=math.degrees(closest),
        peak_response=peak,
        mean_response=mean,
        peak_response_band_edges=(float(edges[0]), float(edges[1])),
        apparent_flux_jy=apparent,
        usable=not reasons,
        reason="; ".join(reasons),
    )


def _candidates(obs: GroupObservation, opts: TransitOptions) -> list[Calibrator]:
    cals = (
        [get_calibrator(n) for n in opts.calibrators] if opts.calibrators else list(load_catalog())
    )
    return [c for c in cals if abs(c.dec_deg - obs.pointing_dec_deg) <= opts.dec_search_deg]


def find_transits(obs: GroupObservation, opts: TransitOptions | None = None) -> TransitReport:
    """The catalogue sources that pass through the beam during ``obs`` (see module docstring)."""
    opts = opts or TransitOptions()
    seen = []
    for cal in _candidates(obs, opts):
        info = assess(cal, obs, opts)
        if info.transit_in_group or info.peak_response >= REPORT_MIN_RESPONSE:
            seen.append(info)
    seen.sort(key=lambda s: (-s.apparent_flux_jy, s.name))
    usable = [s for s in seen if s.usable]
    return TransitReport(
        start_utc=obs.start.isoformat(timespec="milliseconds"),
        end_utc=obs.end.isoformat(timespec="milliseconds"),
        start_mjd=obs.start_mjd,
        end_mjd=obs.end_mjd,
        pointing_dec_deg=obs.pointing_dec_deg,
        ref_freq_hz=opts.ref_freq_hz,
        sources=tuple(seen),
        calibrator=usable[0].name if usable else None,
    )
