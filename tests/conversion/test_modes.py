"""Fields mode, arbitrary centres, channel averaging, partial groups, weights."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import TETE, EarthLocation, SkyCoord
from astropy.time import Time
from casacore import tables

from dsa_stream import instrument
from dsa_stream.conversion import convert_group

from .conftest import fast_options


def _col(ms: Path, col: str, sub: str = "") -> np.ndarray:
    with tables.table(f"{ms}/{sub}" if sub else str(ms), ack=False) as tb:
        return np.asarray(tb.getcol(col))


def test_fields_mode_directions_match_astropy(small_group, small_ms, tmp_path):
    files, truth = small_group
    out = tmp_path / "fields.ms"
    res = convert_group(files, out, fast_options(mode="fields"))
    assert res.phase_center_deg is None and res.n_times == 24
    dirs = _col(out, "PHASE_DIR", "FIELD")[:, 0, :]
    assert dirs.shape == (24, 2)
    # Independent: ICRS of apparent (LST_i, Dec) with astropy's TETE frame at the site.
    site = EarthLocation.from_geodetic(
        instrument.SITE_LON_DEG * u.deg,
        instrument.SITE_LAT_DEG * u.deg,
        instrument.SITE_ALT_M * u.m,
    )
    times = Time(np.array(truth.groups[0].time_jd), format="jd", scale="utc")
    lst = times.sidereal_time("apparent", longitude=site.lon)
    app = SkyCoord(
        ra=lst,
        dec=np.full(24, truth.pointing_dec_app_deg) * u.deg,
        frame=TETE(obstime=times, location=site),
    )
    icrs = app.icrs
    ours = SkyCoord(ra=dirs[:, 0] * u.rad, dec=dirs[:, 1] * u.rad)
    assert ours.separation(icrs).arcsec.max() < 0.5
    # ... and the simulator's truth, and the per-field times.
    np.testing.assert_allclose(
        np.degrees(dirs), np.array(truth.groups[0].phase_centers_icrs_deg), atol=1e-8
    )
    np.testing.assert_allclose(_col(out, "TIME", "FIELD"), np.unique(_col(out, "TIME")))
    # SOURCE and POINTING agree with FIELD (the dishes point at the meridian centres).
    src = _col(out, "DIRECTION", "SOURCE")
    np.testing.assert_allclose(src, dirs, atol=1e-12)
    point = _col(out, "DIRECTION", "POINTING")[:, 0, :]
    ptime = _col(out, "TIME", "POINTING")
    k = np.searchsorted(np.unique(ptime), ptime)
    np.testing.assert_allclose(point, dirs[k], atol=1e-12)
    # The MS keeps every integration's centre in both modes.
    centres = _col(small_ms[0], "RA_ICRS", "DSA_MERIDIAN_CENTRES")
    np.testing.assert_allclose(centres, dirs[:, 0], atol=1e-12)


def test_midpoint_centre_is_truth(small_group, small_ms):
    _, truth = small_group
    _, res = small_ms
    np.testing.assert_allclose(
        res.phase_center_deg, truth.groups[0].mid_phase_center_icrs_deg, atol=1e-8
    )
    assert len(res.meridian_centres) == 24
    dirs = _col(small_ms[0], "PHASE_DIR", "FIELD")
    assert dirs.shape == (1, 1, 2)


def test_icrs_mode_equals_rephased_midpoint(small_group, small_ms, tmp_path):
    """Phasing straight to a position = phasing to the midpoint and then to that position."""
    files, _ = small_group
    ra, dec = small_ms[1].phase_center_deg
    out = tmp_path / "cal.ms"
    res = convert_group(
        files, out, fast_options(mode="icrs", phase_center_deg=(ra, dec), phase_center_name="3C286")
    )
    assert res.phase_center_name == "3C286"
    assert _col(out, "NAME", "FIELD")[0] == "3C286"
    np.testing.assert_allclose(_col(out, "DATA"), _col(small_ms[0], "DATA"), atol=1e-3)


def _flag_channels(files: list[Path]) -> None:
    """Flag channel 1 of every subband everywhere, and channels 2+3 of one subband."""
    for k, f in enumerate(files):
        with h5py.File(f, "r+") as h5:
            fl = h5["Data/flags"][()]
            fl[:, :, 1, :] = True
            if k == 4:
                fl[:, :, 2:4, :] = True
            h5["Data/flags"][...] = fl


def test_channel_average_flag_aware(group_copy, tmp_path):
    files = group_copy()
    _flag_channels(files)
    full = tmp_path / "full.ms"
    avg = tmp_path / "avg.ms"
    convert_group(files, full, fast_options())
    res = convert_group(files, avg, fast_options(channel_average=2))
    assert res.n_channels == 32 and res.channel_average == 2
    d, f = _col(full, "DATA"), _col(full, "FLAG")
    da, fa = _col(avg, "DATA"), _col(avg, "FLAG")
    good = ~f
    w = good.reshape(d.shape[0], 32, 2, 2)
    expect = np.where(
        w.sum(axis=2) > 0,
        (d.reshape(d.shape[0], 32, 2, 2) * w).sum(axis=2) / np.maximum(w.sum(axis=2), 1),
        d.reshape(d.shape[0], 32, 2, 2).mean(axis=2),
    )
    np.testing.assert_array_equal(fa, w.sum(axis=2) == 0)
    np.testing.assert_allclose(da[~fa], expect[~fa], rtol=1e-5, atol=1e-4)
    # Subband 4 (file order = subband order), channels 2+3 flagged: an all-flagged bin.
    cross = _col(avg, "ANTENNA1") != _col(avg, "ANTENNA2")
    assert fa[cross].any() and not fa[cross].all()
    f_full, f_avg = (
        _col(full, "CHAN_FREQ", "SPECTRAL_WINDOW")[0],
        _col(avg, "CHAN_FREQ", "SPECTRAL_WINDOW")[0],
    )
    np.testing.assert_allclose(f_avg, f_full.reshape(-1, 2).mean(axis=1))
    w_full = _col(full, "CHAN_WIDTH", "SPECTRAL_WINDOW")[0]
    np.testing.assert_allclose(_col(avg, "CHAN_WIDTH", "SPECTRAL_WINDOW")[0], 2 * w_full[0])
    np.testing.assert_allclose(_col(avg, "TOTAL_BANDWIDTH", "SPECTRAL_WINDOW"), w_full.sum())


def test_channel_average_must_divide(small_group, tmp_path):
    from dsa_stream.exceptions import ConversionError

    with pytest.raises(ConversionError, match="does not divide the 4 channels"):
        convert_group(small_group[0], tmp_path / "x.ms", fast_options(channel_average=8))
    with pytest.raises(ValueError, match="must divide 48"):
        fast_options(channel_average=5)


def test_partial_group_keeps_full_band(small_group, tmp_path):
    files = [f for f in small_group[0] if not f.name.endswith(("_sb03.hdf5", "_sb12.hdf5"))]
    out = tmp_path / "partial.ms"
    res = convert_group(files, out, fast_options())
    assert res.subbands_missing == (3, 12) and len(res.subbands_present) == 14
    assert any("missing" in w for w in res.warnings)
    assert res.n_channels == 64
    freqs = _col(out, "CHAN_FREQ", "SPECTRAL_WINDOW")[0]
    flags, data = _col(out, "FLAG"), _col(out, "DATA")
    # sb03 and sb12 (sb00 highest) are ascending channel blocks 12 and 3.
    for sb in (3, 12):
        block = slice((15 - sb) * 4, (16 - sb) * 4)
        assert flags[:, block].all() and not np.any(data[:, block])
        assert np.allclose(np.diff(freqs[block]), freqs[1] - freqs[0])
    cross = _col(out, "ANTENNA1") != _col(out, "ANTENNA2")
    assert not flags[cross][:, :12].any()
    with tables.table(str(out), ack=False) as tb:
        assert tb.getkeyword("DSA_MISSING_SUBBANDS") == "3,12"


def test_weights_from_width_and_samples(small_ms):
    ms, res = small_ms
    weight, sigma = _col(ms, "WEIGHT"), _col(ms, "SIGMA")
    expected = 2.0 * res.channel_width_hz * instrument.INTEGRATION_S
    np.testing.assert_allclose(weight, expected, rtol=1e-6)
    np.testing.assert_allclose(sigma, 1 / math.sqrt(expected), rtol=1e-6)
    with tables.table(str(ms), ack=False) as tb:
        assert "WEIGHT_SPECTRUM" not in tb.colnames()
        assert tb.getcolkeyword("DATA", "QuantumUnits") == "Jy"


def test_weight_spectrum_on_request(small_group, tmp_path):
    out = tmp_path / "ws.ms"
    convert_group(small_group[0], out, fast_options(weight_spectrum=True, channel_average=4))
    wsp = _col(out, "WEIGHT_SPECTRUM")
    assert wsp.shape[1:] == (16, 2)
    np.testing.assert_allclose(wsp.mean(axis=1), _col(out, "WEIGHT"), rtol=1e-5)
