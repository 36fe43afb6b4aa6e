"""The subband files look like real DSA-110 files: layout, header, frequencies, names."""

from __future__ import annotations

import datetime as dt
import math

import h5py
import numpy as np
import pytest
from pyuvdata import UVData

from dsa_stream import instrument, naming

# DSA-110 files store drift (zenith-convention) metadata with meridian uvw; pyuvdata warns
# about the uvw/antenna-position mismatch whenever it checks such data.
UVW_MISMATCH = "ignore:The uvw_array does not match the expected values:UserWarning"


def _files(night, group=0):
    result, truth = night
    g = truth.groups[group]
    return [result.out_dir / name for name in g.files]


def test_every_file_reads_with_pyuvdata(cal_night):
    result, truth = cal_night
    for g in truth.groups:
        for sb, name in zip(g.subbands, g.files, strict=True):
            uv = UVData.from_file(result.out_dir / name, file_type="uvh5", run_check=False)
            assert uv.Ntimes == instrument.N_INTEGRATIONS
            assert uv.Nants_telescope == instrument.N_STATIONS
            assert uv.Nbls == 6 * 7 // 2
            assert list(uv.polarization_array) == [-5, -6]
            assert uv.phase_center_catalog[0]["cat_type"] == "unprojected"
            assert uv.telescope.name == "OVRO_MMA"
            assert uv.Nfreqs == 2
            np.testing.assert_allclose(uv.freq_array, instrument.subband_frequencies(sb, 2))


@pytest.mark.filterwarnings(UVW_MISMATCH)
def test_sixteen_subbands_concatenate_along_frequency(cal_night):
    """Real DSA files carry float32 uvw, which pyuvdata's check (always run by
    fast_concat, even for read(..., axis='freq')) rejects; cast to float64 first."""
    files = sorted(_files(cal_night), key=lambda p: naming.parse_subband_filename(p.name).subband)
    with pytest.raises(ValueError, match="uvw_array is not the appropriate type"):
        UVData.from_file(files, file_type="uvh5", axis="freq", run_check=False)
    parts = []
    for path in files:
        uv = UVData.from_file(path, file_type="uvh5", run_check=False)
        assert uv.uvw_array.dtype == np.float32
        uv.uvw_array = uv.uvw_array.astype(np.float64)
        parts.append(uv)
    full = parts[0].fast_concat(parts[1:], axis="freq", run_check=False)
    assert full.Nfreqs == 16 * 2
    assert np.all(np.diff(full.freq_array) < 0)
    assert full.freq_array.max() < instrument.BAND_HIGH_HZ
    assert full.freq_array.min() > instrument.BAND_LOW_HZ
    assert full.Ntimes == 24 and full.Npols == 2


def test_frequency_layout_full_resolution():
    top = instrument.subband_frequencies(0)
    bottom = instrument.subband_frequencies(15)
    assert top.size == 48
    assert np.all(np.diff(top) == -instrument.CHANNEL_WIDTH_HZ)
    assert top[0] + instrument.CHANNEL_WIDTH_HZ / 2 == instrument.BAND_HIGH_HZ
    assert bottom[-1] - instrument.CHANNEL_WIDTH_HZ / 2 == instrument.BAND_LOW_HZ


def test_header_keywords_and_dimensions(cal_night, raw_reader):
    result, truth = cal_night
    g = truth.groups[0]
    widths = []
    for sb, name in zip(g.subbands, g.files, strict=True):
        path = result.out_dir / name
        with h5py.File(path, "r") as h5:
            h = h5["Header"]
            assert h["telescope_name"][()] == b"OVRO_MMA"
            assert h["instrument"][()] == b"DSA"
            assert h["object_name"][()] == b"search"
            assert h["phase_type"][()] == b"drift"
            assert h["Nants_telescope"][()] == 117
            assert h["Nants_data"][()] == 6
            assert h["Nbls"][()] == 21
            assert h["Ntimes"][()] == 24
            assert h["Nblts"][()] == 21 * 24
            assert h["Nspws"][()] == 1 and list(h["spw_array"][:]) == [1]
            assert h["Npols"][()] == 2 and list(h["polarization_array"][:]) == [-5, -6]
            assert h["antenna_names"].dtype == np.dtype("S4")
            assert h["antenna_names"][0] == b"1" and h["antenna_names"][116] == b"117"
            assert np.array_equal(h["antenna_numbers"][:], np.arange(117))
            np.testing.assert_array_equal(h["antenna_diameters"][:], 4.65)
            assert h["antenna_positions"].shape == (117, 3)
            assert h["uvw_array"].dtype == np.float32 and h["uvw_array"].shape == (504, 3)
            assert h["freq_array"].shape == (1, 2)
            assert h["channel_width"].shape == ()
            widths.append(float(h["channel_width"][()]))
            assert h["latitude"][()] == pytest.approx(instrument.SITE_LAT_DEG)
            assert h["longitude"][()] == pytest.approx(instrument.SITE_LON_DEG)
            assert b"dsa-stream" in h["history"][()]
            extra = h["extra_keywords"]
            assert extra["phase_center_dec"][()] == pytest.approx(
                math.radians(truth.pointing_dec_app_deg)
            )
            assert extra["ha_phase_center"][()] == 0.0
            assert extra["phase_center_epoch"][()] == b"HADEC"
            for name_ in ("visdata", "flags", "nsamples"):
                ds = h5["Data"][name_]
                assert ds.shape == (504, 1, 2, 2)
                assert ds.compression is None
            assert h5["Data/visdata"].dtype == np.complex64
            assert h5["Data/flags"].dtype == np.bool_
            assert h5["Data/nsamples"].dtype == np.float32
        raw = raw_reader(path)
        ticks = raw["freq"]
        assert np.all(np.diff(ticks) < 0)
        edge_hi = instrument.BAND_HIGH_HZ - sb * 48 * instrument.CHANNEL_WIDTH_HZ
        assert ticks[0] + abs(widths[-1]) / 2 == pytest.approx(edge_hi)
        # time-major order: all baselines of integration 0 first
        assert np.all(raw["time"][:21] == raw["time"][0])
        assert np.all(np.diff(raw["time"].reshape(24, 21)[:, 0]) > 0)
        assert np.all(raw["ant1"] <= raw["ant2"])
    assert set(widths) == {-24 * instrument.CHANNEL_WIDTH_HZ}


def test_uvw_is_meridian_uvw_of_the_antenna_positions(cal_night, raw_reader, meridian_uvw):
    result, truth = cal_night
    raw = raw_reader(result.out_dir / truth.groups[0].files[0])
    enu = {s.antenna_number: np.array(s.enu_m) for s in truth.stations}
    rel = {s.antenna_number: np.array(s.rel_ecef_m) for s in truth.stations}
    np.testing.assert_allclose(raw["antpos"], np.array([rel[k] for k in range(117)]))
    bl = np.array([enu[b] - enu[a] for a, b in zip(raw["ant1"], raw["ant2"], strict=True)])
    expected = meridian_uvw(bl, raw["dec0"])
    np.testing.assert_allclose(raw["uvw"], expected, atol=2e-4)
    auto = raw["ant1"] == raw["ant2"]
    assert np.all(raw["uvw"][auto] == 0)


def test_jitter_and_time_array(cal_night, raw_reader):
    result, truth = cal_night
    for g in truth.groups:
        stamps = {naming.parse_subband_filename(n).timestamp for n in g.files}
        start = dt.datetime.fromisoformat(g.start_utc).replace(tzinfo=dt.UTC)
        assert len(stamps) > 1, "file-name timestamps should differ between subbands"
        for stamp in stamps:
            assert -1 <= (stamp - start).total_seconds() <= 5
        times = [raw_reader(result.out_dir / n)["time"] for n in g.files]
        for t in times[1:]:
            assert t.tobytes() == times[0].tobytes()
        first = float(times[0][0])
        obs_start = first - 0.5 * instrument.INTEGRATION_S / 86400.0
        from astropy.time import Time

        when = Time(obs_start, format="jd", scale="utc").to_datetime(timezone=dt.UTC)
        assert naming.group_key(when) == g.key
        assert g.key == result.groups[g.index].key


def test_consecutive_observations_follow_each_other(cal_night):
    _, truth = cal_night
    g0, g1 = truth.groups
    step_s = (g1.start_mjd - g0.start_mjd) * 86400.0
    assert step_s == pytest.approx(instrument.OBSERVATION_S, abs=1e-3)
    first_centre = g0.start_mjd + 2400000.5 + instrument.INTEGRATION_S / 2 / 86400
    assert g0.time_jd[0] == pytest.approx(first_centre, abs=1e-9)
    assert (g0.end_mjd - g0.start_mjd) * 86400.0 == pytest.approx(instrument.OBSERVATION_S)
