"""A catalogue calibrator transits where it was asked to, through the beam centre."""

from __future__ import annotations

import datetime as dt
import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import HADec, SkyCoord
from astropy.time import Time

from dsa_stream import instrument
from dsa_stream.beam import airy_power
from dsa_stream.calibration.catalog import get_calibrator
from dsa_stream.exceptions import SimulationError
from dsa_stream.simulate import SimulationOptions, plan_night


def test_transit_in_the_middle_of_the_chosen_group(cal_night):
    result, truth = cal_night
    cal = truth.calibrator
    assert cal is not None and cal.name == "3C286"
    assert cal.transit_group == 1 and result.calibrator_group == 1
    g = truth.groups[1]
    assert g.contains_calibrator_transit and not truth.groups[0].contains_calibrator_transit
    assert result.groups[1].contains_calibrator_transit
    assert abs(cal.transit_mjd - g.mid_mjd) * 86400.0 < 1e-3
    assert g.key.startswith("2025-10-02T")


def test_transit_agrees_with_astropy_hour_angle(cal_night):
    _, truth = cal_night
    cal = truth.calibrator
    from astropy.coordinates import EarthLocation

    loc = EarthLocation.from_geodetic(
        instrument.SITE_LON_DEG * u.deg,
        instrument.SITE_LAT_DEG * u.deg,
        instrument.SITE_ALT_M * u.m,
    )
    when = Time(cal.transit_mjd, format="mjd", scale="utc")
    hadec = SkyCoord(cal.ra_deg * u.deg, cal.dec_deg * u.deg, frame="icrs").transform_to(
        HADec(obstime=when, location=loc)
    )
    ha_deg = hadec.ha.wrap_at(180 * u.deg).deg
    assert abs(ha_deg) < 5e-3  # 1.2 s of time
    assert hadec.dec.deg == pytest.approx(truth.pointing_dec_app_deg, abs=2e-3)


def test_pointing_goes_through_the_calibrator(cal_night):
    _, truth = cal_night
    cal = truth.calibrator
    assert truth.pointing_dec_app_deg == pytest.approx(cal.apparent_dec_deg, abs=1e-9)
    assert cal.closest_separation_deg < 0.05
    assert airy_power(math.radians(cal.closest_separation_deg), 1.4e9) > 0.999
    seen = {f.name: f for f in truth.sources_in_field(1)}
    assert seen["3C286"].peak_response > 0.999
    assert seen["3C286"].peak_apparent_flux_jy == pytest.approx(15.08, rel=0.01)
    assert truth.sources_in_field(1)[0].name == "3C286"


def test_calibrator_on_another_date(tmp_path):
    opts = SimulationOptions(
        out_dir=tmp_path,
        antennas=3,
        calibrator="4C55.16",
        date="2025-11-18",
        n_groups=3,
        calibrator_group=2,
    )
    truth = plan_night(opts).truth
    assert truth.calibrator.transit_group == 2
    assert truth.calibrator.transit_utc.startswith("2025-11-18")
    assert truth.pointing_dec_app_deg == pytest.approx(55.6, abs=0.2)


def test_explicit_start_keeps_the_calibrator(tmp_path):
    cal = get_calibrator("3C454.3")
    base = SimulationOptions(out_dir=tmp_path, antennas=3, calibrator="3C454.3", calibrator_group=0)
    transit = plan_night(base).truth.calibrator.transit_utc
    start = dt.datetime.fromisoformat(transit).replace(tzinfo=dt.UTC) - dt.timedelta(minutes=20)
    truth = plan_night(base.model_copy(update={"start": start, "n_groups": 6})).truth
    assert truth.calibrator.transit_group == 3
    assert truth.pointing_dec_app_deg == pytest.approx(cal.dec_deg, abs=0.5)
    names = {s.name for s in truth.sources}
    assert "3C454.3" in names


def test_calibrator_outside_the_beam_is_an_error(tmp_path):
    opts = SimulationOptions(
        out_dir=tmp_path, antennas=3, calibrator="3C286", start="2025-10-02T00:00:00"
    )
    with pytest.raises(SimulationError, match="never comes within the primary beam"):
        plan_night(opts)
    far = SimulationOptions(out_dir=tmp_path, antennas=3, calibrator="3C286", dec_deg=40.0)
    with pytest.raises(SimulationError, match="never comes within the primary beam"):
        plan_night(far)


def test_unknown_calibrator_is_a_simulation_error(tmp_path):
    with pytest.raises(SimulationError, match="close names: 3C286"):
        plan_night(SimulationOptions(out_dir=tmp_path, antennas=3, calibrator="3C2866"))


def test_default_pointing_and_start(tmp_path):
    truth = plan_night(SimulationOptions(out_dir=tmp_path, antennas=3)).truth
    assert truth.pointing_dec_app_deg == 54.5734
    assert truth.groups[0].key == "2025-10-02T00:00:00"
    assert truth.calibrator is None
    pcs = np.array(truth.groups[0].phase_centers_icrs_deg)
    assert np.all(np.diff(pcs[:, 0]) > 0)  # the meridian moves east in RA
    sidereal_day_s = 86164.0905
    step_deg = np.diff(pcs[:, 0]).mean()
    assert step_deg == pytest.approx(instrument.INTEGRATION_S / sidereal_day_s * 360.0, rel=1e-3)
