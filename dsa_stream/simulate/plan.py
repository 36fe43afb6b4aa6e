"""Plan a simulated night: times, pointing, array, sky, gains and the truth, before any data.

The plan is cheap (no visibilities); :mod:`dsa_stream.simulate.night` turns it into files.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dsa_stream import __version__, instrument
from dsa_stream.beam import BEAM_MODEL_NAME, airy_first_null_rad
from dsa_stream.calibration.catalog import Calibrator, get_calibrator
from dsa_stream.exceptions import CalibrationError, SimulationError
from dsa_stream.simulate import schedule
from dsa_stream.simulate.array import ArrayLayout, build_layout
from dsa_stream.simulate.gains import InstrumentModel, draw_instrument
from dsa_stream.simulate.options import DEFAULT_DEC_DEG, DEFAULT_START, SimulationOptions
from dsa_stream.simulate.schedule import GroupTimes
from dsa_stream.simulate.sky import SkySource, calibrator_source, explicit_sources, strip_sources
from dsa_stream.simulate.truth import (
    CONVENTIONS,
    CalibratorTruth,
    GroupTruth,
    SimulationTruth,
    StationTruth,
)
from dsa_stream.simulate.visibilities import (
    GroupSky,
    direction_cosines,
    meridian_uvw,
    noise_spec,
    visible_sources,
)

logger = logging.getLogger(__name__)

BAND_CENTRE_HZ = 0.5 * (instrument.BAND_LOW_HZ + instrument.BAND_HIGH_HZ)
MJD_OFFSET = 2400000.5
SITE_TRUTH: dict[str, object] = {
    "latitude_deg": instrument.SITE_LAT_DEG,
    "longitude_deg": instrument.SITE_LON_DEG,
    "altitude_m": instrument.SITE_ALT_M,
    "telescope_name": instrument.CORRELATOR_TELESCOPE_NAME,
    "instrument": "DSA",
}


@dataclass(frozen=True)
class NightPlan:
    """Everything about a night except the visibilities."""

    opts: SimulationOptions
    layout: ArrayLayout
    ant1: NDArray[np.int64]
    """(Nbls,) first antenna number (station - 1) of each baseline, autos included."""
    ant2: NDArray[np.int64]
    ant1_idx: NDArray[np.int64]
    """(Nbls,) index of ant1 into the active stations."""
    ant2_idx: NDArray[np.int64]
    dec0_rad: float
    """Apparent pointing Dec."""
    uvw_m: NDArray[np.float64]
    """(Nbls, 3) meridian uvw."""
    groups: tuple[GroupTimes, ...]
    group_skies: tuple[GroupSky, ...]
    sources: tuple[SkySource, ...]
    instrument: InstrumentModel
    truth: SimulationTruth

    @property
    def channel_width_hz(self) -> float:
        """Signed channel width written to the files (negative: descending channels)."""
        return -instrument.subband_channel_width(self.opts.channels_per_subband)


@dataclass(frozen=True)
class _Pointing:
    first_start_jd: float
    dec0_deg: float
    calibrator: Calibrator | None
    transit_jd: float | None


def _night_bounds(opts: SimulationOptions, first_start_jd: float) -> tuple[float, float]:
    last = schedule.group_start_jd(first_start_jd, opts.n_groups - 1, opts.gap_minutes)
    return first_start_jd, last + instrument.OBSERVATION_S / schedule.SECONDS_PER_DAY


def resolve_pointing(opts: SimulationOptions) -> _Pointing:
    """Start of the night, apparent pointing Dec and calibrator transit from the options."""
    cal = None
    if opts.calibrator is not None:
        try:
            cal = get_calibrator(opts.calibrator)
        except CalibrationError as exc:
            raise SimulationError(str(exc)) from exc
    transit = None
    if opts.start is not None:
        first = schedule.datetime_to_jd(opts.start)
        if cal is not None:
            lo, hi = _night_bounds(opts, first)
            transit = schedule.transit_jd(cal.ra_deg, cal.dec_deg, 0.5 * (lo + hi))
    elif cal is not None:
        day = dt.datetime.combine(opts.date, dt.time(0, 0), tzinfo=dt.UTC)
        transit = schedule.transit_jd(
            cal.ra_deg, cal.dec_deg, schedule.datetime_to_jd(day), after=True
        )
        half = 0.5 * instrument.OBSERVATION_S / schedule.SECONDS_PER_DAY
        k_start = schedule.group_start_jd(0.0, opts.calibrator_group, opts.gap_minutes)
        first = transit - half - k_start
    else:
        first = schedule.datetime_to_jd(DEFAULT_START)
    if opts.dec_deg is not None:
        dec0 = opts.dec_deg
    elif cal is not None and transit is not None:
        dec0 = schedule.apparent_dec_deg(transit, cal.ra_deg, cal.dec_deg)
    else:
        dec0 = DEFAULT_DEC_DEG
    return _Pointing(first, dec0, cal, transit)


def baselines(active: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices (into ``active``) of every pair i <= j, in the correlator's order."""
    i, j = np.triu_indices(active.size)
    return i.astype(np.int64), j.astype(np.int64)


def _all_band_frequencies(nchan: int) -> NDArray[np.float64]:
    return np.concatenate(
        [instrument.subband_frequencies(sb, nchan) for sb in range(instrument.N_SUBBANDS)]
    )


def _night_sky(
    opts: SimulationOptions, groups: tuple[GroupTimes, ...], cal: Calibrator | None
) -> tuple[SkySource, ...]:
    first, last = groups[0], groups[-1]
    span = (last.time_jd[-1] - first.time_jd[0]) / schedule.SIDEREAL_DAY * 360.0
    decs = np.degrees(np.concatenate([g.pc_dec_icrs_rad for g in groups]))
    sources = strip_sources(
        opts.seed,
        opts.sky,
        math.degrees(first.pc_ra_icrs_rad[0]),
        span + 0.1,
        float(decs.min()),
        float(decs.max()),
    )
    sources += explicit_sources(opts.sky)
    if cal is not None:
        sources.append(calibrator_source(cal))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise SimulationError("source names must be unique (check the explicit sources)")
    return tuple(sources)


def _check_calibrator(pointing: _Pointing, groups: tuple[GroupTimes, ...]) -> float | None:
    """Closest approach of the calibrator to the phase centre (deg); error if never in the beam."""
    cal = pointing.calibrator
    if cal is None:
        return None
    src = [calibrator_source(cal)]
    dec0 = math.radians(pointing.dec0_deg)
    n_max = max(float(direction_cosines(g, src, dec0)[2].max()) for g in groups)
    closest = math.degrees(math.acos(min(1.0, max(-1.0, n_max))))
    null = math.degrees(float(airy_first_null_rad(BAND_CENTRE_HZ)))
    if closest > null:
        raise SimulationError(
            f"calibrator {cal.name} never comes within the primary beam: closest approach "
            f"{closest:.2f} deg from the phase centre, first null at {null:.2f} deg "
            f"(pointing Dec {pointing.dec0_deg:.4f} deg); change --start/--dec or drop --start"
        )
    return closest


def plan_night(opts: SimulationOptions) -> NightPlan:
    """Work out everything about the night except the visibilities.

    Raises:
        SimulationError: for options that cannot be honoured (unknown calibrator, a
            calibrator that never enters the beam, too few antennas...).
    """
    pointing = resolve_pointing(opts)
    dec0 = math.radians(pointing.dec0_deg)
    layout = build_layout(opts.antennas)
    i, j = baselines(layout.active)
    ant1, ant2 = layout.active[i] - 1, layout.active[j] - 1
    groups = tuple(
        schedule.group_times(opts, pointing.first_start_jd, k, dec0) for k in range(opts.n_groups)
    )
    closest = _check_calibrator(pointing, groups)
    sources = _night_sky(opts, groups, pointing.calibrator)
    band = _all_band_frequencies(opts.channels_per_subband)
    skies = tuple(
        visible_sources(g, list(sources), dec0, band, opts.primary_beam, opts.min_beam_response)
        for g in groups
    )
    inst = draw_instrument(opts.seed, opts.corruption, layout.active)
    truth = build_truth(_TruthInputs(opts, layout, pointing, closest, groups, skies, sources, inst))
    logger.info(
        "planned %d group(s) from %s, Dec %.4f deg, %d antennas, %d sources",
        opts.n_groups,
        groups[0].key,
        pointing.dec0_deg,
        layout.active.size,
        len(sources),
    )
    return NightPlan(
        opts=opts,
        layout=layout,
        ant1=ant1,
        ant2=ant2,
        ant1_idx=i,
        ant2_idx=j,
        dec0_rad=dec0,
        uvw_m=meridian_uvw(layout.rel_ecef_m, ant1, ant2, dec0),
        groups=groups,
        group_skies=skies,
        sources=sources,
        instrument=inst,
        truth=truth,
    )


@dataclass(frozen=True)
class _TruthInputs:
    opts: SimulationOptions
    layout: ArrayLayout
    pointing: _Pointing
    closest_deg: float | None
    groups: tuple[GroupTimes, ...]
    skies: tuple[GroupSky, ...]
    sources: tuple[SkySource, ...]
    instrument: InstrumentModel


def _group_truth(
    opts: SimulationOptions, g: GroupTimes, sky: GroupSky, transit: float | None
) -> GroupTruth:
    return GroupTruth(
        index=g.index,
        key=g.key,
        start_utc=schedule.jd_to_iso(g.start_jd),
        start_mjd=g.start_jd - MJD_OFFSET,
        mid_utc=schedule.jd_to_iso(g.mid_jd),
        mid_mjd=g.mid_jd - MJD_OFFSET,
        end_utc=schedule.jd_to_iso(g.end_jd),
        end_mjd=g.end_jd - MJD_OFFSET,
        time_jd=tuple(float(t) for t in g.time_jd),
        lst_rad=tuple(float(x) for x in g.lst_rad),
        phase_centers_icrs_deg=tuple(
            (math.degrees(float(r)), math.degrees(float(d)))
            for r, d in zip(g.pc_ra_icrs_rad, g.pc_dec_icrs_rad, strict=True)
        ),
        mid_phase_center_icrs_deg=(
            math.degrees(g.mid_icrs_rad[0]),
            math.degrees(g.mid_icrs_rad[1]),
        ),
        files=tuple(g.filename(sb) for sb in opts.subbands),
        subbands=opts.subbands,
        contains_calibrator_transit=transit is not None and g.start_jd <= transit < g.end_jd,
        modelled_sources=tuple(s.name for s in sky.sources),
    )


def _calibrator_truth(t: _TruthInputs, groups: tuple[GroupTruth, ...]) -> CalibratorTruth | None:
    cal, transit = t.pointing.calibrator, t.pointing.transit_jd
    if cal is None or transit is None:
        return None
    in_group = [g.index for g in groups if g.contains_calibrator_transit]
    return CalibratorTruth(
        name=cal.name,
        ra_deg=cal.ra_deg,
        dec_deg=cal.dec_deg,
        flux=cal.flux,
        transit_utc=schedule.jd_to_iso(transit),
        transit_mjd=transit - MJD_OFFSET,
        transit_group=in_group[0] if in_group else None,
        apparent_dec_deg=schedule.apparent_dec_deg(transit, cal.ra_deg, cal.dec_deg),
        closest_separation_deg=float(t.closest_deg or 0.0),
    )


def _noise_truth(opts: SimulationOptions, channel_width_hz: float) -> dict[str, object]:
    noise = noise_spec(opts.corruption.sefd_jy, channel_width_hz)
    return {
        "enabled": opts.corruption.noise,
        "sefd_jy": noise.sefd_jy,
        "sigma_jy": noise.sigma_jy,
        "integration_s": instrument.INTEGRATION_S,
    }


def build_truth(t: _TruthInputs) -> SimulationTruth:
    """The truth document of a planned night."""
    opts = t.opts
    groups = tuple(
        _group_truth(opts, g, s, t.pointing.transit_jd)
        for g, s in zip(t.groups, t.skies, strict=True)
    )
    active = {int(s) for s in t.layout.active}
    width = -instrument.subband_channel_width(opts.channels_per_subband)
    return SimulationTruth(
        simulator_version=__version__,
        conventions=CONVENTIONS,
        options=opts.model_dump(mode="json"),
        seed=opts.seed,
        site=SITE_TRUTH,
        pointing_dec_app_deg=t.pointing.dec0_deg,
        channels_per_subband=opts.channels_per_subband,
        channel_width_hz=width,
        noise=_noise_truth(opts, width),
        beam={
            "model": BEAM_MODEL_NAME,
            "dish_diameter_m": instrument.DISH_DIAMETER_M,
            "applied": opts.primary_beam,
            "min_response": opts.min_beam_response,
        },
        stations=tuple(
            StationTruth(
                station=int(st),
                antenna_number=int(st) - 1,
                active=int(st) in active,
                enu_m=tuple(float(x) for x in t.layout.enu_m[k]),
                rel_ecef_m=tuple(float(x) for x in t.layout.rel_ecef_m[k]),
            )
            for k, st in enumerate(t.layout.stations)
        ),
        active_stations=tuple(sorted(active)),
        instrument=t.instrument,
        sources=t.sources,
        calibrator=_calibrator_truth(t, groups),
        groups=groups,
    )
