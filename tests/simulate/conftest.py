"""Tiny simulated nights shared by the simulator tests (session scope: each is made once)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

import dsa_stream.casa_env  # noqa: F401
from dsa_stream import instrument
from dsa_stream.beam import airy_power
from dsa_stream.simulate import (
    CorruptionOptions,
    PointSourceSpec,
    SimulationOptions,
    SimulationResult,
    SimulationTruth,
    SkyOptions,
    load_truth,
    simulate_night,
)


def run(opts: SimulationOptions) -> tuple[SimulationResult, SimulationTruth]:
    result = simulate_night(opts)
    return result, load_truth(result.truth_path)


@pytest.fixture(scope="session")
def cal_night(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, SimulationTruth]:
    """Two groups, 6 antennas, 2 channels/subband, 3C286 transiting in the middle of group 1."""
    opts = SimulationOptions(
        out_dir=tmp_path_factory.mktemp("cal_night"),
        n_groups=2,
        antennas=6,
        channels_per_subband=2,
        seed=11,
        calibrator="3C286",
        calibrator_group=1,
    )
    return run(opts)


def _model_options(out_dir: Path, noise: bool) -> SimulationOptions:
    return SimulationOptions(
        out_dir=out_dir,
        n_groups=1,
        antennas=6,
        channels_per_subband=4,
        seed=5,
        start="2025-10-02T12:00:00",
        dec_deg=40.0,
        sky=SkyOptions(
            extra_sources=(
                PointSourceSpec(
                    name="offset", ra_deg=74.3, dec_deg=41.2, flux_jy=3.0, spectral_index=-0.8
                ),
            )
        ),
        corruption=CorruptionOptions(noise=noise),
    )


@pytest.fixture(scope="session")
def clean_night(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SimulationResult, SimulationTruth]:
    """One group with gains, bandpasses, beam and random sources but no noise."""
    return run(_model_options(tmp_path_factory.mktemp("clean"), noise=False))


@pytest.fixture(scope="session")
def noisy_night(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SimulationResult, SimulationTruth]:
    """The same night as ``clean_night`` with thermal noise."""
    return run(_model_options(tmp_path_factory.mktemp("noisy"), noise=True))


def read_raw(path: Path) -> dict[str, np.ndarray]:
    """The datasets of a subband file, read with h5py (no pyuvdata)."""
    with h5py.File(path, "r") as h5:
        h = h5["Header"]
        return {
            "vis": h5["Data/visdata"][:, 0],
            "time": h["time_array"][:],
            "ant1": h["ant_1_array"][:],
            "ant2": h["ant_2_array"][:],
            "freq": h["freq_array"][0],
            "uvw": h["uvw_array"][:],
            "antpos": h["antenna_positions"][:],
            "dec0": float(h["extra_keywords/phase_center_dec"][()]),
        }


def meridian_uvw_enu(enu: np.ndarray, dec0: float) -> np.ndarray:
    """uvw of ENU baselines for hour angle 0 and Dec dec0 (textbook rotation, geodetic lat)."""
    lat = math.radians(instrument.SITE_LAT_DEG)
    e, n, u = enu[..., 0], enu[..., 1], enu[..., 2]
    x = -n * math.sin(lat) + u * math.cos(lat)
    z = n * math.cos(lat) + u * math.sin(lat)
    return np.stack(
        [e, -math.sin(dec0) * x + math.cos(dec0) * z, math.cos(dec0) * x + math.sin(dec0) * z],
        axis=-1,
    )


def analytic_data(truth: SimulationTruth, group: int, raw: dict[str, np.ndarray]) -> np.ndarray:
    """The noise-free data a file should hold, computed from the truth only.

    Returns (Nblts, Nfreq, 2) complex128: G_a1 conj(G_a2) (sum of point sources through
    the Airy beam, plus the SEFD on autocorrelations).
    """
    from pyuvdata.utils.phasing import transform_icrs_to_app
    from pyuvdata.utils.times import get_lst_for_time

    freqs = raw["freq"]
    dec0 = math.radians(truth.pointing_dec_app_deg)
    enu = {s.antenna_number: np.array(s.enu_m) for s in truth.stations}
    bl_enu = np.array([enu[b] - enu[a] for a, b in zip(raw["ant1"], raw["ant2"], strict=True)])
    uvw = meridian_uvw_enu(bl_enu, dec0)
    times, row_time = np.unique(raw["time"], return_inverse=True)
    lst = get_lst_for_time(
        times,
        latitude=instrument.SITE_LAT_DEG,
        longitude=instrument.SITE_LON_DEG,
        altitude=instrument.SITE_ALT_M,
    )
    loc = (
        math.radians(instrument.SITE_LAT_DEG),
        math.radians(instrument.SITE_LON_DEG),
        instrument.SITE_ALT_M,
    )
    sources = [truth.source(name) for name in truth.groups[group].modelled_sources]
    nt, ns = times.size, len(sources)
    app_ra, app_dec = transform_icrs_to_app(
        time_array=np.repeat(times, ns),
        ra=np.tile(np.radians([s.ra_deg for s in sources]), nt),
        dec=np.tile(np.radians([s.dec_deg for s in sources]), nt),
        telescope_loc=loc,
    )
    app_ra, app_dec = app_ra.reshape(nt, ns), app_dec.reshape(nt, ns)
    vis = np.zeros((raw["time"].size, freqs.size), dtype=np.complex128)
    for k, src in enumerate(sources):
        dec = app_dec[row_time, k]
        dra = app_ra[row_time, k] - lst[row_time]
        l_dir = np.cos(dec) * np.sin(dra)
        m = np.sin(dec) * math.cos(dec0) - np.cos(dec) * math.sin(dec0) * np.cos(dra)
        n = np.sin(dec) * math.sin(dec0) + np.cos(dec) * math.cos(dec0) * np.cos(dra)
        beam = airy_power(np.arccos(n)[:, None], freqs[None, :])
        geo = uvw[:, 0] * l_dir + uvw[:, 1] * m + uvw[:, 2] * (n - 1.0)
        phase = 2 * np.pi * geo[:, None] * freqs[None, :] / instrument.C_M_S
        vis += src.flux_jy(freqs)[None, :] * beam * np.exp(1j * phase)
    auto = raw["ant1"] == raw["ant2"]
    vis[auto] += truth.noise["sefd_jy"]
    index = {st: k for k, st in enumerate(truth.active_stations)}
    gains = truth.total_gain(freqs)
    g1 = gains[[index[a + 1] for a in raw["ant1"]]]
    g2 = gains[[index[a + 1] for a in raw["ant2"]]]
    return g1 * np.conj(g2) * vis[:, :, None]


@pytest.fixture(scope="session")
def analytic() -> Callable[[SimulationTruth, int, dict[str, np.ndarray]], np.ndarray]:
    """:func:`analytic_data`, as a fixture."""
    return analytic_data


@pytest.fixture(scope="session")
def raw_reader() -> Callable[[Path], dict[str, np.ndarray]]:
    """:func:`read_raw`, as a fixture."""
    return read_raw


@pytest.fixture(scope="session")
def meridian_uvw() -> Callable[[np.ndarray, float], np.ndarray]:
    """:func:`meridian_uvw_enu`, as a fixture."""
    return meridian_uvw_enu
