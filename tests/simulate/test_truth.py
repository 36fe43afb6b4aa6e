"""truth.json: schema, exact re-evaluation of gains/bandpasses, field sources."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsa_stream import instrument
from dsa_stream.exceptions import SimulationError
from dsa_stream.simulate import load_truth
from dsa_stream.simulate.gains import InstrumentModel


def test_truth_schema(cal_night):
    result, truth = cal_night
    doc = json.loads(result.truth_path.read_text())
    for key in (
        "simulator_version",
        "options",
        "seed",
        "site",
        "conventions",
        "noise",
        "beam",
        "stations",
        "active_stations",
        "instrument",
        "sources",
        "calibrator",
        "groups",
    ):
        assert key in doc
    assert doc["seed"] == 11 and doc["options"]["antennas"] == 6
    assert "G_a1p(nu) conj(G_a2p(nu))" in doc["conventions"]["corruption"]
    assert doc["noise"]["sefd_jy"] == 6500.0
    assert doc["noise"]["sigma_jy"] == pytest.approx(
        instrument.thermal_sigma_jy(6500.0, 24 * instrument.CHANNEL_WIDTH_HZ)
    )
    assert doc["beam"]["model"] == "airy" and doc["beam"]["dish_diameter_m"] == 4.65
    assert len(doc["stations"]) == 117 and len(doc["active_stations"]) == 6
    ant = doc["instrument"]["antennas"][0]
    assert len(ant["gain"]) == 2 and len(ant["gain"][0]) == 2  # [re, im] for XX and YY
    g = doc["groups"][0]
    for key in (
        "key",
        "start_utc",
        "start_mjd",
        "mid_utc",
        "mid_mjd",
        "end_utc",
        "end_mjd",
        "mid_phase_center_icrs_deg",
        "files",
        "contains_calibrator_transit",
    ):
        assert key in g
    assert len(g["files"]) == 16
    assert result.truth_path.stat().st_size < 200_000


def test_bandpass_reevaluates_exactly(cal_night):
    _, truth = cal_night
    freqs = np.concatenate([truth.frequencies(sb) for sb in range(16)])
    again = InstrumentModel.model_validate_json(truth.instrument.model_dump_json())
    assert np.array_equal(truth.bandpass(freqs), again.bandpass(freqs))
    bp = truth.bandpass(freqs)
    assert bp.shape == (6, 32, 2)
    amp = np.abs(bp)
    assert amp.min() > 0.7 and amp.max() < 1.1  # ripple and edge roll-off
    g = truth.gains()
    assert np.abs(np.abs(g) - 1).max() < 0.5
    np.testing.assert_allclose(truth.total_gain(freqs), g[:, None, :] * bp)


def test_rolloff_is_deepest_at_subband_edges(cal_night):
    _, truth = cal_night
    edge = instrument.BAND_LOW_HZ + 1.0
    centre = instrument.BAND_LOW_HZ + 24 * instrument.CHANNEL_WIDTH_HZ
    r = truth.instrument.rolloff([edge, centre])
    assert r[0] == pytest.approx(0.85, abs=1e-4) and r[1] == pytest.approx(1.0)


def test_sources_in_field(cal_night):
    _, truth = cal_night
    seen = truth.sources_in_field(0, min_response=0.1)
    assert 3 <= len(seen) <= 40
    flux = [s.peak_apparent_flux_jy for s in seen]
    assert flux == sorted(flux, reverse=True)
    for s in seen:
        assert s.peak_response >= 0.1
        assert s.peak_apparent_flux_jy == pytest.approx(s.flux_jy * s.peak_response)
    assert set(s.name for s in seen) <= set(truth.groups[0].modelled_sources)


def test_load_truth_errors(tmp_path):
    with pytest.raises(SimulationError, match="cannot read"):
        load_truth(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(SimulationError, match="not a dsa-stream simulation truth"):
        load_truth(bad)


def test_group_lookup(cal_night):
    _, truth = cal_night
    g1 = truth.groups[1]
    assert truth.group(g1.key) is g1 and truth.group(1) is g1
    with pytest.raises(SimulationError):
        truth.group("2000-01-01T00:00:00")
