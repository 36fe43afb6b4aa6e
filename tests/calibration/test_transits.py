"""The transit finder: which calibrator passes through the beam, when, and how well."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dsa_stream.beam import airy_power
from dsa_stream.calibration.catalog import get_calibrator
from dsa_stream.calibration.geometry import (
    icrs_to_apparent,
    meridian_centres_icrs,
    separation_rad,
    transit_mjd,
)
from dsa_stream.calibration.observation import (
    GroupObservation,
    ObservationTimeError,
    check_times,
    expand_inputs,
    observation_from_ms,
    read_observation,
)
from dsa_stream.calibration.options import BAND_CENTRE_HZ, TransitOptions
from dsa_stream.calibration.transits import find_transits
from dsa_stream.exceptions import CalibrationError
from dsa_stream.simulate import SimulationOptions, plan_night

from .conftest import Night


def planned(tmp_path: Path, **kw: object) -> list[GroupObservation]:
    """The groups of a planned (not written) night, as the transit finder sees them."""
    opts = SimulationOptions(out_dir=tmp_path, antennas=4, channels_per_subband=1, **kw)  # type: ignore[arg-type]
    truth = plan_night(opts).truth
    return [
        GroupObservation(
            source="uvh5",
            paths=(tmp_path,),
            times_mjd=tuple(t - 2400000.5 for t in g.time_jd),
            integration_s=12.884902000427246,
            pointing_dec_deg=truth.pointing_dec_app_deg,
            centres_icrs_deg=g.phase_centers_icrs_deg,
            freq_min_hz=1311.25e6,
            freq_max_hz=1498.75e6,
            n_channels=768,
        )
        for g in truth.groups
    ]


def group_at(start_mjd: float, dec_app_deg: float) -> GroupObservation:
    """A group of 24 integrations starting at ``start_mjd``, pointing at ``dec_app_deg``."""
    step = 12.884902000427246 / 86400.0
    times = start_mjd + (np.arange(24) + 0.5) * step
    ra, dec = meridian_centres_icrs(times, math.radians(dec_app_deg))
    return GroupObservation(
        source="uvh5",
        paths=(Path("/nowhere"),),
        times_mjd=tuple(float(t) for t in times),
        integration_s=12.884902000427246,
        pointing_dec_deg=dec_app_deg,
        centres_icrs_deg=tuple(
            (math.degrees(r), math.degrees(d)) for r, d in zip(ra, dec, strict=True)
        ),
        freq_min_hz=1311.25e6,
        freq_max_hz=1498.75e6,
        n_channels=768,
    )


#: 3C147: its transit near 2025-10-02 and its apparent Dec then.
CAL = get_calibrator("3C147")
TRANSIT = transit_mjd(CAL.ra_deg, CAL.dec_deg, 60950.5)
DEC_APP = math.degrees(
    float(icrs_to_apparent(TRANSIT, math.radians(CAL.ra_deg), math.radians(CAL.dec_deg))[1][0])
)
HALF_GROUP = 0.5 * 24 * 12.884902000427246 / 86400.0


def test_the_calibrator_group_and_the_transit_time(tmp_path: Path) -> None:
    opts = SimulationOptions(
        out_dir=tmp_path, n_groups=3, antennas=4, calibrator="3C286", calibrator_group=1
    )
    truth = plan_night(opts).truth
    obs = planned(tmp_path, n_groups=3, calibrator="3C286", calibrator_group=1)
    reports = [find_transits(o) for o in obs]
    assert [r.calibrator for r in reports] == [None, "3C286", None]
    info = reports[1].source("3C286")
    assert info.transit_in_group and info.usable and info.reason == ""
    assert abs(info.transit_mjd - truth.calibrator.transit_mjd) * 86400 < 0.5  # seconds
    # the pointing is the calibrator's apparent Dec: it passes straight through the centre
    assert info.closest_separation_deg < 1e-6 and info.peak_response == pytest.approx(1.0)
    # the neighbours see the same transit, outside their span
    for r in (reports[0], reports[2]):
        other = r.source("3C286")
        assert not other.usable and other.reason == "transit outside the group"
        assert other.transit_mjd == pytest.approx(info.transit_mjd, abs=1e-8)


def test_responses_follow_the_beam_model(tmp_path: Path) -> None:
    cal = CAL
    obs = group_at(TRANSIT - HALF_GROUP, DEC_APP + 1.0)
    info = find_transits(obs).source("3C147")
    assert info.closest_separation_deg == pytest.approx(1.0, abs=0.01)
    assert info.peak_response == pytest.approx(
        float(airy_power(math.radians(info.closest_separation_deg), BAND_CENTRE_HZ)), rel=1e-9
    )
    centres = np.radians(np.array(obs.centres_icrs_deg))
    theta = separation_rad(
        math.radians(cal.ra_deg), math.radians(cal.dec_deg), centres[:, 0], centres[:, 1]
    )
    assert info.mean_response == pytest.approx(float(np.mean(airy_power(theta, BAND_CENTRE_HZ))))
    assert 0.0 < info.mean_response < info.peak_response < 1.0
    # the beam is wider at the bottom of the band
    low, high = info.peak_response_band_edges
    assert low > info.peak_response > high
    assert info.flux_jy == pytest.approx(float(cal.flux_jy(BAND_CENTRE_HZ)))
    assert info.apparent_flux_jy == pytest.approx(info.flux_jy * info.peak_response)


def test_sources_that_do_not_transit_or_are_too_faint_are_rejected(tmp_path: Path) -> None:
    obs = group_at(TRANSIT - HALF_GROUP, DEC_APP)
    strict = find_transits(obs, TransitOptions(min_apparent_flux_jy=30.0))
    assert strict.calibrator is None
    assert "apparent flux" in strict.source("3C147").reason
    far = find_transits(obs, TransitOptions(min_response=0.3)).model_copy()
    assert far.calibrator == "3C147"
    off = group_at(TRANSIT - HALF_GROUP, DEC_APP + 2.5)
    weak = find_transits(off).source("3C147")
    assert weak.transit_in_group and not weak.usable and "peak response" in weak.reason
    # 26 min before the transit: 4.2 deg away, in the first sidelobe
    early = group_at(TRANSIT - 26.0 / 1440.0, DEC_APP)
    seen = find_transits(early).source("3C147")
    assert not seen.transit_in_group and seen.peak_response < 0.02
    assert seen.reason.startswith("transit outside the group; peak response")
    # three hours before: far outside the beam, not even reported
    earlier = group_at(TRANSIT - 3.0 / 24.0, DEC_APP)
    report = find_transits(earlier)
    assert report.calibrator is None and "3C147" not in [s.name for s in report.sources]
    with pytest.raises(CalibrationError, match="not seen"):
        report.source("3C147")
    only = find_transits(obs, TransitOptions(calibrators=("3C286",)))
    assert only.calibrator is None and only.sources == ()


def test_the_data_give_the_same_group_as_the_plan(night: Night, tmp_path: Path) -> None:
    groups = expand_inputs([night.raw])
    assert [len(g) for g in groups] == [16, 16, 16]
    obs = [read_observation(g) for g in groups]
    for o, g in zip(obs, night.truth.groups, strict=True):
        assert o.source == "uvh5" and len(o.times_mjd) == 24
        assert o.start_mjd == pytest.approx(g.start_mjd, abs=1e-9)
        assert np.allclose(
            np.array(o.centres_icrs_deg), np.array(g.phase_centers_icrs_deg), atol=3e-6
        )
    assert [find_transits(o).calibrator for o in obs] == [None, "3C147", None]
    with pytest.raises(CalibrationError, match="3 groups"):
        read_observation([night.raw])


def test_observation_from_an_ms_and_unreadable_times(night: Night, tmp_path: Path) -> None:
    from casacore import tables

    from dsa_stream.conversion import ConvertOptions, ValidationOptions, convert_group

    ms = tmp_path / "t.ms"
    convert_group(
        night.files(1),
        ms,
        ConvertOptions(
            validation=ValidationOptions(casatools="off", casacore35="off"), checksum_inputs=False
        ),
    )
    from_ms, from_files = observation_from_ms(ms), read_observation(night.files(1))
    assert np.allclose(from_ms.times_mjd, from_files.times_mjd, atol=1e-9)
    assert from_ms.pointing_dec_deg == pytest.approx(from_files.pointing_dec_deg)
    assert np.allclose(from_ms.centres_icrs_deg, from_files.centres_icrs_deg, atol=1e-9)
    assert from_ms.phase_centre_name == "meridian_mid" and from_ms.n_channels == 32
    with tables.table(str(ms), readonly=False, ack=False) as tb:
        tb.putcol("TIME", np.zeros(tb.nrows()))
    with pytest.raises(ObservationTimeError, match="not plausible"):
        observation_from_ms(ms)
    with pytest.raises(ObservationTimeError, match="not plausible"):
        check_times(np.array([1.7e9 / 86400.0]), "unix seconds read as MJD")
    with pytest.raises(ObservationTimeError):
        check_times(np.array([np.nan]), "nan")
