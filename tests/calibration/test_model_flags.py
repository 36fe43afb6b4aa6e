"""The drift-scan calibrator model in MODEL_DATA, and flagging before the solve."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from dsa_stream.beam import airy_power
from dsa_stream.calibration.catalog import get_calibrator
from dsa_stream.calibration.flagging import flag_calibrator_ms
from dsa_stream.calibration.geometry import separation_rad
from dsa_stream.calibration.model import model_amplitudes, write_model_data
from dsa_stream.calibration.observation import observation_from_ms
from dsa_stream.calibration.options import FlagOptions
from dsa_stream.calibration.refant import choose_refant
from dsa_stream.conversion import convert_group
from dsa_stream.exceptions import CalibrationError

from .conftest import FIELDS, Night


@pytest.fixture
def cal_copy(calibrator_ms: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(calibrator_ms, tmp_path / "cal.ms"))


def test_model_is_flux_times_the_beam_along_the_drift(cal_copy: Path, night: Night) -> None:
    cal = get_calibrator("3C147")
    summary = write_model_data(cal_copy, cal, observation_from_ms(cal_copy))
    with tables.table(str(cal_copy), ack=False) as tb:
        model = tb.getcol("MODEL_DATA")
        t = tb.getcol("TIME")
    with tables.table(f"{cal_copy}/SPECTRAL_WINDOW", ack=False) as sw:
        freqs = sw.getcell("CHAN_FREQ", 0)
    # independent expectation from the simulator's truth: pointing centres per integration
    g = night.truth.group(1)
    centres = np.radians(np.array(g.phase_centers_icrs_deg))
    theta = separation_rad(
        math.radians(cal.ra_deg), math.radians(cal.dec_deg), centres[:, 0], centres[:, 1]
    )
    expected = cal.flux_jy(freqs)[None, :] * airy_power(theta[:, None], freqs[None, :])
    times = (np.array(g.time_jd) - 2400000.5) * 86400.0
    k = np.searchsorted(times, t - 1e-3)
    np.testing.assert_allclose(model[:, :, 0].real, expected[k], rtol=2e-6)
    np.testing.assert_array_equal(model[:, :, 0], model[:, :, 1])
    assert np.all(model.imag == 0) and model.real.min() > 0
    # the drift: ~7% lower at the group edges than at transit (3C147 transits mid-group)
    assert summary.response_max > 0.999 and 0.90 < summary.response_min < 0.96
    assert summary.model_min_jy == pytest.approx(float(model.real.min()), rel=1e-6)
    amp, flux, response = model_amplitudes(cal, observation_from_ms(cal_copy), freqs)
    assert amp.shape == (24, freqs.size) and np.allclose(amp, flux * response)


def test_model_needs_the_ms_phased_to_the_calibrator(night: Night, tmp_path: Path) -> None:
    cal = get_calibrator("3C147")
    # group 2's meridian (group 1's midpoint is the calibrator itself: it transits mid-group)
    midpoint = FIELDS.model_copy(update={"mode": "midpoint"})
    mid = convert_group(night.files(2), tmp_path / "mid.ms", midpoint)
    with pytest.raises(CalibrationError, match="arcsec from 3C147"):
        write_model_data(mid.ms_path, cal, observation_from_ms(mid.ms_path))
    fields = convert_group(night.files(1), tmp_path / "f.ms", FIELDS)
    with pytest.raises(CalibrationError, match="several fields"):
        write_model_data(fields.ms_path, cal, observation_from_ms(fields.ms_path))


def test_flagging_clips_outliers_and_dead_antennas(cal_copy: Path) -> None:
    cal = get_calibrator("3C147")
    obs = observation_from_ms(cal_copy)
    with tables.table(str(cal_copy), readonly=False, ack=False) as tb:
        data = tb.getcol("DATA")
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        cross = np.flatnonzero(a1 != a2)
        rng = np.random.default_rng(3)
        hits = rng.choice(cross, 40, replace=False)
        chans = rng.integers(0, data.shape[1], 40)
        data[hits, chans, 0] *= 40.0  # interference spikes
        active = np.unique(a1[cross])
        zero_ant, quiet_ant = int(active[0]), int(active[7])  # one off, one without signal
        data[(a1 == zero_ant) | (a2 == zero_ant)] = 0
        data[(a1 == quiet_ant) | (a2 == quiet_ant)] *= 0.01
        tb.putcol("DATA", data)
        names = [str(n) for n in tables.table(f"{cal_copy}/ANTENNA", ack=False).getcol("NAME")]
        positions = tables.table(f"{cal_copy}/ANTENNA", ack=False).getcol("POSITION")
    with tables.table(f"{cal_copy}/SPECTRAL_WINDOW", ack=False) as sw:
        freqs = sw.getcell("CHAN_FREQ", 0)
    amp, _, _ = model_amplitudes(cal, obs, freqs)
    summary = flag_calibrator_ms(
        cal_copy,
        amp,
        np.array(obs.times_mjd) * 86400.0,
        FlagOptions(flagger="mad"),
        names,
        workdir=cal_copy.parent,
        timeout_s=60,
    )
    assert summary.flagger == "none" and summary.mad_clip
    dead = {names[zero_ant], names[quiet_ant]}
    assert set(summary.dead_antennas) == dead
    with tables.table(str(cal_copy), ack=False) as tb:
        flags = tb.getcol("FLAG")
    assert flags[hits, chans, 0].all()  # every spike clipped
    off = [zero_ant, quiet_ant]
    live = (a1 != a2) & ~np.isin(a1, off) & ~np.isin(a2, off)
    assert flags[live].mean() < 0.01  # and little else
    assert all(summary.antenna_flagged[n] == 1.0 for n in dead)
    pos = {n: positions[i] for i, n in enumerate(names)}
    refants = choose_refant(summary.antenna_flagged, pos)
    assert not dead & set(refants)
    assert summary.initial_fraction == 0.0 and summary.final_fraction > 0.2
