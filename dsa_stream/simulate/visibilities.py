"""The visibility model: point sources through the primary beam, fringe-stopped on the meridian.

For integration ``t`` the phase centre is apparent (HA = 0, Dec = dec0). A source at
apparent (alpha, delta) has, with ``dra = alpha - LST_t``,

    l = cos(delta) sin(dra)
    m = sin(delta) cos(dec0) - cos(delta) sin(dec0) cos(dra)
    n = sin(delta) sin(dec0) + cos(delta) cos(dec0) cos(dra)

and, with the time-independent meridian ``uvw = x(ant2) - x(ant1)`` (pyuvdata convention),

    V(b, nu, t) = sum_s S_s(nu) A_s(t, nu) exp(+2 pi i (u l + v m + w (n - 1)) nu / c)

where ``A`` is the Airy power beam of :mod:`dsa_stream.beam` at the angle
``arccos(n)`` from the pointing (the dish points at the phase centre). XX = YY = V
(unpolarised, I = (XX + YY) / 2). Autocorrelations are ``SEFD + sum_s S_s A_s``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from pyuvdata.utils.phasing import calc_uvw

from dsa_stream import instrument
from dsa_stream.beam import airy_power
from dsa_stream.simulate.schedule import GroupTimes, icrs_to_apparent
from dsa_stream.simulate.sky import SkySource

#: Random-stream identifier of the thermal noise.
NOISE_STREAM = 3


class GroupSky(NamedTuple):
    """Sources that contribute to one observation and their direction cosines."""

    sources: tuple[SkySource, ...]
    l_dir: NDArray[np.float64]
    """(n_times, n_sources) direction cosine l (towards east)."""
    m_dir: NDArray[np.float64]
    """(n_times, n_sources) direction cosine m (towards north)."""
    n_dir: NDArray[np.float64]
    """(n_times, n_sources) direction cosine n: cosine of the angle from the phase centre."""
    peak_response: NDArray[np.float64]
    """(n_sources,) largest beam response over the observation and the band."""


class NoiseSpec(NamedTuple):
    """Thermal-noise parameters of one subband."""

    sefd_jy: float
    sigma_jy: float
    """Cross-correlation noise per real/imaginary part (Jy)."""
    dnu_tau: float
    """Channel width times integration time (radiometer equation)."""


def direction_cosines(
    times: GroupTimes, sources: list[SkySource], dec0_rad: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(l, m, n) of each source at each integration, relative to apparent (HA=0, dec0)."""
    nt, ns = times.time_jd.size, len(sources)
    if ns == 0:
        empty = np.zeros((nt, 0))
        return empty, empty.copy(), empty.copy()
    ra = np.radians([s.ra_deg for s in sources])
    dec = np.radians([s.dec_deg for s in sources])
    app_ra, app_dec = icrs_to_apparent(
        np.repeat(times.time_jd, ns), np.tile(ra, nt), np.tile(dec, nt)
    )
    dra = app_ra.reshape(nt, ns) - times.lst_rad[:, None]
    delta = app_dec.reshape(nt, ns)
    sd0, cd0 = math.sin(dec0_rad), math.cos(dec0_rad)
    l_dir = np.cos(delta) * np.sin(dra)
    m_dir = np.sin(delta) * cd0 - np.cos(delta) * sd0 * np.cos(dra)
    n_dir = np.sin(delta) * sd0 + np.cos(delta) * cd0 * np.cos(dra)
    return l_dir, m_dir, n_dir


def beam_response(
    n: NDArray[np.float64], freqs_hz: NDArray[np.float64], enabled: bool
) -> NDArray[np.float64]:
    """Airy power response, (n_times, n_sources, n_freq); ones when the beam is off."""
    if not enabled:
        return np.ones((*n.shape, freqs_hz.size))
    theta = np.arccos(np.clip(n, -1.0, 1.0))
    return airy_power(theta[:, :, None], freqs_hz[None, None, :])


def visible_sources(
    times: GroupTimes,
    sources: list[SkySource],
    dec0_rad: float,
    band_freqs_hz: NDArray[np.float64],
    primary_beam: bool,
    min_response: float,
) -> GroupSky:
    """Keep the sources whose beam response reaches ``min_response`` during the observation.

    Sources more than 90 deg from the phase centre (n <= 0) are always dropped.
    """
    l_dir, m_dir, n_dir = direction_cosines(times, sources, dec0_rad)
    peak = (
        beam_response(n_dir, band_freqs_hz, primary_beam).max(axis=(0, 2))
        if sources
        else np.zeros(0)
    )
    keep = np.flatnonzero((peak >= min_response) & (n_dir.max(axis=0) > 0.0)) if sources else []
    return GroupSky(
        sources=tuple(sources[i] for i in keep),
        l_dir=l_dir[:, keep],
        m_dir=m_dir[:, keep],
        n_dir=n_dir[:, keep],
        peak_response=peak[keep],
    )


def meridian_uvw(
    rel_ecef_m: NDArray[np.float64],
    ant1: NDArray[np.int64],
    ant2: NDArray[np.int64],
    dec0_rad: float,
) -> NDArray[np.float64]:
    """Time-independent uvw (m) of baselines for the phase centre apparent (HA=0, dec0).

    ``ant1``/``ant2`` are antenna numbers (station - 1) indexing ``rel_ecef_m``; the
    result follows pyuvdata, ``uvw = x(ant2) - x(ant1)``.
    """
    nbl = ant1.size
    uvw = calc_uvw(
        app_ra=np.zeros(nbl),
        app_dec=np.full(nbl, dec0_rad),
        frame_pa=np.zeros(nbl),
        lst_array=np.zeros(nbl),
        use_ant_pos=True,
        antenna_positions=rel_ecef_m,
        antenna_numbers=np.arange(rel_ecef_m.shape[0]),
        ant_1_array=ant1,
        ant_2_array=ant2,
        telescope_lat=math.radians(instrument.SITE_LAT_DEG),
        telescope_lon=math.radians(instrument.SITE_LON_DEG),
    )
    return np.asarray(uvw, dtype=np.float64)


def model_visibilities(
    uvw_m: NDArray[np.float64],
    sky: GroupSky,
    freqs_hz: NDArray[np.float64],
    primary_beam: bool,
) -> NDArray[np.complex128]:
    """Noise-free sky visibilities, (n_times * n_baselines, n_freq), time-major rows.

    The per-channel phase factor is advanced by a recurrence in double precision
    (exact to ~1e-13 over a subband); channels must be equally spaced.
    """
    nt, nbl, nf = sky.l_dir.shape[0], uvw_m.shape[0], freqs_hz.size
    out = np.zeros((nf, nt, nbl), dtype=np.complex128)
    dnu = float(freqs_hz[1] - freqs_hz[0]) if nf > 1 else 0.0
    beam = beam_response(sky.n_dir, freqs_hz, primary_beam)
    scale = 2.0 * np.pi / instrument.C_M_S
    for s, src in enumerate(sky.sources):
        amp = src.flux_jy(freqs_hz)[None, :] * beam[:, s, :]  # (nt, nf)
        delay = (
            uvw_m[None, :, 0] * sky.l_dir[:, s, None]
            + uvw_m[None, :, 1] * sky.m_dir[:, s, None]
            + uvw_m[None, :, 2] * (sky.n_dir[:, s, None] - 1.0)
        )  # (nt, nbl) metres
        phasor = np.exp(1j * scale * freqs_hz[0] * delay)
        step = np.exp(1j * scale * dnu * delay) if nf > 1 else None
        term = np.empty_like(phasor)
        for k in range(nf):
            np.multiply(phasor, amp[:, k, None], out=term)
            out[k] += term
            if step is not None and k + 1 < nf:
                phasor *= step
    return np.ascontiguousarray(out.transpose(1, 2, 0).reshape(nt * nbl, nf))


def noise_spec(sefd_jy: float, channel_width_hz: float) -> NoiseSpec:
    """Noise parameters for a channel width (Hz) and the DSA-110 integration time."""
    width = abs(channel_width_hz)
    return NoiseSpec(
        sefd_jy=sefd_jy,
        sigma_jy=instrument.thermal_sigma_jy(sefd_jy, width, instrument.INTEGRATION_S),
        dnu_tau=width * instrument.INTEGRATION_S,
    )


def corrupt(
    model: NDArray[np.complex128],
    ant1_idx: NDArray[np.int64],
    ant2_idx: NDArray[np.int64],
    gains: NDArray[np.complex128],
    noise: NoiseSpec,
    rng: np.random.Generator | None,
) -> NDArray[np.complex64]:
    """Add autocorrelation power and noise, then apply ``G_a1 conj(G_a2)``.

    Args:
        model: (n_times * n_baselines, n_freq) sky visibilities, time-major rows.
        ant1_idx: (n_baselines,) index of the first antenna into ``gains``.
        ant2_idx: (n_baselines,) index of the second antenna into ``gains``.
        gains: (n_antennas, n_freq, 2) total complex gains G = g B.
        noise: SEFD and noise levels.
        rng: Noise generator; None for noise-free data.

    Returns:
        (n_times * n_baselines, n_freq, 2) complex64 data for XX and YY.
    """
    nbl, nf = ant1_idx.size, model.shape[1]
    nt = model.shape[0] // nbl
    auto_bl = ant1_idx == ant2_idx
    auto = np.tile(auto_bl, nt)
    out = np.empty((model.shape[0], nf, 2), dtype=np.complex64)
    for p in range(2):
        data = model.copy()
        data[auto] += noise.sefd_jy
        if rng is not None:
            z = rng.standard_normal((*data.shape, 2), dtype=np.float32)
            auto_level = data[auto].real
            data += noise.sigma_jy * z.view(np.complex64)[..., 0]
            data[auto] = auto_level * (1.0 + z[auto, :, 0] / math.sqrt(noise.dnu_tau))
        product = gains[ant1_idx, :, p] * np.conj(gains[ant2_idx, :, p])  # (nbl, nf)
        # |G|^2 exactly real on autocorrelations (a fused multiply-add leaves ~1e-16 imag)
        product[auto_bl] = np.abs(gains[ant1_idx[auto_bl], :, p]) ** 2
        data.reshape(nt, nbl, nf)[...] *= product[None, :, :]
        out[:, :, p] = data
    return out
