"""The visibilities are the analytic point-source model times the injected gains (and noise)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyuvdata import UVData

from dsa_stream import instrument
from dsa_stream.simulate import (
    CorruptionOptions,
    PointSourceSpec,
    SimulationOptions,
    SkyOptions,
    load_truth,
    plan_night,
    simulate_night,
)


def test_noise_free_data_equal_the_analytic_model(clean_night, analytic, raw_reader):
    result, truth = clean_night
    g = truth.groups[0]
    assert "offset" in g.modelled_sources and len(g.modelled_sources) > 3
    for name in g.files:
        raw = raw_reader(result.out_dir / name)
        expected = analytic(truth, 0, raw)
        got = raw["vis"].astype(np.complex128)
        cross = raw["ant1"] != raw["ant2"]
        scale = np.abs(expected[cross]).max()
        # complex64 rounding (6e-8 relative) is the only difference
        np.testing.assert_allclose(got[cross], expected[cross], rtol=1e-6, atol=1e-6 * scale)
        np.testing.assert_allclose(got[~cross], expected[~cross], rtol=1e-6)
        assert np.all(got[~cross].imag == 0)


def test_one_baseline_by_hand(clean_night, raw_reader):
    """Baseline (first, last antenna), XX, first integration: a fully explicit evaluation."""
    result, truth = clean_night
    raw = raw_reader(result.out_dir / truth.groups[0].files[3])
    a, b = truth.active_stations[0] - 1, truth.active_stations[-1] - 1
    row = int(np.flatnonzero((raw["ant1"] == a) & (raw["ant2"] == b))[0])
    assert row < 21  # first integration
    from pyuvdata.utils.phasing import calc_uvw, transform_icrs_to_app
    from pyuvdata.utils.times import get_lst_for_time

    lat, lon = math.radians(instrument.SITE_LAT_DEG), math.radians(instrument.SITE_LON_DEG)
    dec0 = raw["dec0"]
    uvw = calc_uvw(
        app_ra=np.zeros(1),
        app_dec=np.array([dec0]),
        frame_pa=np.zeros(1),
        lst_array=np.zeros(1),
        use_ant_pos=True,
        antenna_positions=raw["antpos"],
        antenna_numbers=np.arange(117),
        ant_1_array=np.array([a]),
        ant_2_array=np.array([b]),
        telescope_lat=lat,
        telescope_lon=lon,
    )[0]
    t = raw["time"][row : row + 1]
    lst = get_lst_for_time(
        t,
        latitude=instrument.SITE_LAT_DEG,
        longitude=instrument.SITE_LON_DEG,
        altitude=instrument.SITE_ALT_M,
    )[0]
    expected = np.zeros(raw["freq"].size, dtype=np.complex128)
    for name in truth.groups[0].modelled_sources:
        src = truth.source(name)
        ra, dec = transform_icrs_to_app(
            time_array=t,
            ra=np.radians([src.ra_deg]),
            dec=np.radians([src.dec_deg]),
            telescope_loc=(lat, lon, instrument.SITE_ALT_M),
        )
        h = ra[0] - lst
        l_dir = math.cos(dec[0]) * math.sin(h)
        m = math.sin(dec[0]) * math.cos(dec0) - math.cos(dec[0]) * math.sin(dec0) * math.cos(h)
        n = math.sin(dec[0]) * math.sin(dec0) + math.cos(dec[0]) * math.cos(dec0) * math.cos(h)
        from dsa_stream.beam import airy_power

        for k, nu in enumerate(raw["freq"]):
            phase = (
                2 * math.pi * (uvw[0] * l_dir + uvw[1] * m + uvw[2] * (n - 1)) * nu / 299792458.0
            )
            amp = float(src.flux_jy(nu)) * float(airy_power(math.acos(n), nu))
            expected[k] += amp * complex(math.cos(phase), math.sin(phase))
    gains = truth.total_gain(raw["freq"])
    ia, ib = truth.active_stations.index(a + 1), truth.active_stations.index(b + 1)
    expected *= gains[ia, :, 0] * np.conj(gains[ib, :, 0])
    np.testing.assert_allclose(raw["vis"][row, :, 0], expected, rtol=2e-6, atol=1e-7)


def test_noisy_data_scatter_by_the_radiometer_equation(noisy_night, analytic, raw_reader):
    result, truth = noisy_night
    sigma = truth.noise["sigma_jy"]
    assert sigma == pytest.approx(
        instrument.thermal_sigma_jy(6500.0, 12 * instrument.CHANNEL_WIDTH_HZ)
    )
    index = {st: k for k, st in enumerate(truth.active_stations)}
    cross_norm, auto_norm = [], []
    for name in truth.groups[0].files:
        raw = raw_reader(result.out_dir / name)
        expected = analytic(truth, 0, raw)
        gains = truth.total_gain(raw["freq"])
        g1 = gains[[index[a + 1] for a in raw["ant1"]]]
        g2 = gains[[index[a + 1] for a in raw["ant2"]]]
        noise = (raw["vis"] - expected) / (g1 * np.conj(g2))
        cross = raw["ant1"] != raw["ant2"]
        cross_norm.append(noise[cross].ravel() / sigma)
        level = (expected / (g1 * np.conj(g2)))[~cross].real
        dnu_tau = 12 * instrument.CHANNEL_WIDTH_HZ * instrument.INTEGRATION_S
        auto_norm.append((noise[~cross].real / level * math.sqrt(dnu_tau)).ravel())
    z = np.concatenate(cross_norm)
    n = z.size
    chi2_per_dof = np.sum(z.real**2 + z.imag**2) / (2 * n)
    assert abs(chi2_per_dof - 1.0) < 5 * math.sqrt(1.0 / n)
    assert abs(z.real.mean()) < 5 / math.sqrt(n) and abs(z.imag.mean()) < 5 / math.sqrt(n)
    za = np.concatenate(auto_norm)
    assert abs(np.std(za) - 1.0) < 5 / math.sqrt(za.size)


@pytest.mark.filterwarnings("ignore:The uvw_array does not match the expected values")
@pytest.mark.filterwarnings("ignore:Recalculating uvw_array without adjusting")
def test_sign_convention_agrees_with_pyuvdata_phasing(tmp_path):
    """Phasing the drift data to a source with pyuvdata turns its visibilities real."""
    base = SimulationOptions(
        out_dir=tmp_path,
        antennas=8,
        channels_per_subband=2,
        subbands=(0, 15),
        start="2025-10-02T03:00:00",
        dec_deg=54.5734,
        primary_beam=False,
        sky=SkyOptions(density_per_deg2=0.0),
        corruption=CorruptionOptions(noise=False, gains=False, bandpass=False),
    )
    mid_ra, mid_dec = plan_night(base).truth.groups[0].mid_phase_center_icrs_deg
    src = PointSourceSpec(
        name="A",
        ra_deg=mid_ra + 1.0 / math.cos(math.radians(mid_dec)),
        dec_deg=mid_dec + 0.5,
        flux_jy=1.0,
    )
    opts = base.model_copy(update={"sky": SkyOptions(density_per_deg2=0.0, extra_sources=(src,))})
    result = simulate_night(opts)
    truth = load_truth(result.truth_path)
    g = truth.groups[0]
    uv = UVData.from_file(result.out_dir / g.files[1], file_type="uvh5", run_check=False)
    uv.uvw_array = uv.uvw_array.astype(np.float64)
    raw_phase = np.angle(uv.data_array[uv.ant_1_array != uv.ant_2_array])
    assert np.abs(raw_phase).max() > 1.0  # the source is well off the phase centre
    # declare the truth: one ICRS phase centre per integration (apparent HA=0, dec0)
    for i, t in enumerate(np.unique(uv.time_array)):
        ra, dec = g.phase_centers_icrs_deg[i]
        cid = uv._add_phase_center(
            f"meridian{i}",
            cat_type="sidereal",
            cat_lon=math.radians(ra),
            cat_lat=math.radians(dec),
            cat_frame="icrs",
            cat_epoch=2000.0,
        )
        uv.phase_center_id_array[uv.time_array == t] = cid
    uv._clear_unused_phase_centers()
    uv._set_app_coords_helper()
    uv.set_uvws_from_antenna_positions(update_vis=False)
    uv.phase(ra=math.radians(src.ra_deg), dec=math.radians(src.dec_deg), cat_name="A")
    cross = uv.data_array[uv.ant_1_array != uv.ant_2_array]
    np.testing.assert_allclose(cross, 1.0, atol=1e-5)
