"""The T-shaped array and the choice of active stations."""

from __future__ import annotations

import numpy as np
import pytest

from dsa_stream import instrument
from dsa_stream.exceptions import SimulationError
from dsa_stream.simulate.array import (
    EW_STATIONS,
    NS_STATIONS,
    OUTRIGGER_STATIONS,
    active_stations,
    build_layout,
    station_enu,
)


def test_t_shape_from_the_design():
    enu = station_enu()
    ew = enu[[s - 1 for s in EW_STATIONS]]
    ns = enu[[s - 1 for s in NS_STATIONS]]
    out = enu[[s - 1 for s in OUTRIGGER_STATIONS]]
    np.testing.assert_allclose(np.diff(ew[:, 0]), 5.75)
    assert np.all(ew[:, 1] == 0) and ew[25, 0] == 0.0
    np.testing.assert_allclose(np.diff(ns[:, 1]), 8.653)
    assert ns[0, 1] == pytest.approx(7.0) and ns[-1, 1] == pytest.approx(439.65)
    radius = np.hypot(out[:, 0], out[:, 1])
    assert radius.min() == pytest.approx(537.0) and radius.max() == pytest.approx(2043.0)
    azimuth = np.degrees(np.arctan2(out[:, 0], out[:, 1])) % 360
    assert np.ptp(np.sort(azimuth)) > 270  # spread all around


def test_96_antennas_is_the_real_active_set():
    act = active_stations(96)
    expected = [s for s in range(1, 118) if s not in instrument.INACTIVE_STATIONS]
    assert act.tolist() == expected
    assert sum(s in EW_STATIONS for s in act) == 47
    assert sum(s in NS_STATIONS for s in act) == 35
    assert sum(s in OUTRIGGER_STATIONS for s in act) == 14


@pytest.mark.parametrize("n", [3, 4, 6, 8, 16, 48])
def test_small_arrays_keep_the_t_and_outriggers(n):
    act = active_stations(n)
    assert act.size == n and len(set(act.tolist())) == n
    assert not set(act.tolist()) & set(instrument.INACTIVE_STATIONS)
    assert any(s in EW_STATIONS for s in act)
    assert any(s in NS_STATIONS for s in act)
    n_out = sum(s in OUTRIGGER_STATIONS for s in act)
    assert n_out >= (2 if n >= 6 else 1)
    assert np.array_equal(act, active_stations(n))


def test_antenna_count_limits():
    with pytest.raises(SimulationError):
        active_stations(2)
    with pytest.raises(SimulationError):
        active_stations(97)


def test_relative_ecef_is_consistent_with_enu():
    layout = build_layout(6)
    dist_enu = np.linalg.norm(layout.enu_m[116] - layout.enu_m[0])
    dist_ecef = np.linalg.norm(layout.rel_ecef_m[116] - layout.rel_ecef_m[0])
    assert dist_ecef == pytest.approx(dist_enu, rel=1e-9)
    assert np.linalg.norm(layout.rel_ecef_m[25]) < 1e-6  # DSA-026 at the junction
