"""Per-antenna complex gains and bandpasses, as parameters that re-evaluate exactly.

Convention (also written into ``truth.json``): for antenna ``a``, polarization ``p`` in
(XX, YY) and frequency ``nu`` the total complex gain is ``G_ap(nu) = g_ap * B_ap(nu)``
and the simulated data of baseline (a1, a2) are

    data(a1, a2, p, nu) = G_a1p(nu) * conj(G_a2p(nu)) * (V_model(a1, a2, nu) + noise)

with the pyuvdata baseline convention ``uvw = x(a2) - x(a1)``. The gains are constant
over the night.

* ``g_ap = A * exp(i phi)``: ``A = 1 + amplitude_rms * N(0, 1)`` clipped to [0.5, 1.5],
  ``phi`` uniform in [-pi, pi).
* ``B_ap(nu) = (1 + r_ap * sin(2 pi (nu - band_low_hz) / P_ap + psi_ap)) * R(nu)
  * exp(2 pi i tau_ap (nu - delay_ref_hz))`` with a residual delay ``tau_ap`` (N(0,
  delay_rms)), a ripple of fractional amplitude ``r_ap`` (ripple_amplitude times
  U(0.5, 1.5)), period ``P_ap`` (U(20, 60) MHz) and phase ``psi_ap`` (U(0, 2 pi)), and the
  polyphase filter-bank roll-off common to all antennas,
  ``R(nu) = 1 - rolloff_depth * |2 x - 1| ** rolloff_power``, ``x`` the fractional
  position of ``nu`` inside its 11.71875 MHz subband (0 at the low edge, 1 at the high edge).

Parameters are drawn for all 117 stations in station order from the seed, so a station
keeps its gain whichever subset of stations is active.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict

from dsa_stream import instrument
from dsa_stream.simulate.options import CorruptionOptions

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

#: Random-stream identifier of the gain draws (see :mod:`dsa_stream.simulate.night`).
GAIN_STREAM = 2
POLARIZATION_NAMES = ("XX", "YY")
#: Reference frequency of the residual delays: the band centre (Hz).
DELAY_REF_HZ = 0.5 * (instrument.BAND_LOW_HZ + instrument.BAND_HIGH_HZ)
SUBBAND_WIDTH_HZ = instrument.N_CHAN_PER_SUBBAND * instrument.CHANNEL_WIDTH_HZ
ROLLOFF_POWER = 4.0


class PolBandpass(BaseModel):
    """Bandpass parameters of one antenna and polarization."""

    model_config = _FROZEN

    delay_ns: float
    """Residual delay tau (ns)."""
    ripple_amplitude: float
    """Fractional ripple amplitude r."""
    ripple_period_hz: float
    """Ripple period P (Hz)."""
    ripple_phase_rad: float
    """Ripple phase psi (rad)."""


class AntennaGain(BaseModel):
    """Complex gain g and bandpass parameters of one station, per polarization (XX, YY)."""

    model_config = _FROZEN

    station: int
    """Station number (1-based; the antenna number in the files is station - 1)."""
    gain: tuple[tuple[float, float], tuple[float, float]]
    """g for XX and YY as (real, imaginary)."""
    bandpass: tuple[PolBandpass, PolBandpass]
    """Bandpass parameters for XX and YY."""


class InstrumentModel(BaseModel):
    """Gains and bandpasses of the active stations, with the switches that were used."""

    model_config = _FROZEN

    gains_applied: bool
    """False: g = 1 for every antenna (the drawn values are still listed)."""
    bandpass_applied: bool
    """False: B = 1 for every antenna (the drawn values are still listed)."""
    rolloff_depth: float
    """Fractional roll-off at the subband edges."""
    rolloff_power: float = ROLLOFF_POWER
    """Exponent of the roll-off profile."""
    delay_ref_hz: float = DELAY_REF_HZ
    """Frequency at which the residual delays have zero phase (Hz)."""
    band_low_hz: float = instrument.BAND_LOW_HZ
    """Lower band edge, origin of the ripple phase and of the subband grid (Hz)."""
    subband_width_hz: float = SUBBAND_WIDTH_HZ
    """Width of one subband (Hz)."""
    antennas: tuple[AntennaGain, ...]
    """One entry per active station, ascending station number."""

    def stations(self) -> tuple[int, ...]:
        """Station numbers, in the order of the gain arrays."""
        return tuple(a.station for a in self.antennas)

    def complex_gains(self) -> NDArray[np.complex128]:
        """G as an (n_antennas, 2) array (ones when gains were not applied)."""
        if not self.gains_applied:
            return np.ones((len(self.antennas), 2), dtype=np.complex128)
        return np.array([[complex(*g) for g in a.gain] for a in self.antennas])

    def rolloff(self, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """The subband-edge roll-off R(nu), common to all antennas."""
        freq = np.asarray(freq_hz, dtype=np.float64)
        pos = (freq - self.band_low_hz) / self.subband_width_hz
        x = pos - np.floor(pos)
        return np.asarray(1.0 - self.rolloff_depth * np.abs(2.0 * x - 1.0) ** self.rolloff_power)

    def bandpass(self, freq_hz: ArrayLike) -> NDArray[np.complex128]:
        """B(nu) as an (n_antennas, n_freq, 2) array (ones when not applied)."""
        freq = np.atleast_1d(np.asarray(freq_hz, dtype=np.float64))
        out = np.ones((len(self.antennas), freq.size, 2), dtype=np.complex128)
        if not self.bandpass_applied:
            return out
        roll = self.rolloff(freq)
        for i, ant in enumerate(self.antennas):
            for p, bp in enumerate(ant.bandpass):
                ripple = 1.0 + bp.ripple_amplitude * np.sin(
                    2.0 * np.pi * (freq - self.band_low_hz) / bp.ripple_period_hz
                    + bp.ripple_phase_rad
                )
                delay = np.exp(2j * np.pi * bp.delay_ns * 1e-9 * (freq - self.delay_ref_hz))
                out[i, :, p] = ripple * roll * delay
        return out

    def total_gain(self, freq_hz: ArrayLike) -> NDArray[np.complex128]:
        """G = g * B as an (n_antennas, n_freq, 2) array."""
        return self.complex_gains()[:, None, :] * self.bandpass(freq_hz)


def _draw_station(
    rng: np.random.Generator, opts: CorruptionOptions
) -> tuple[tuple[tuple[float, float], tuple[float, float]], tuple[PolBandpass, PolBandpass]]:
    gains = []
    bandpasses = []
    for _ in POLARIZATION_NAMES:
        amp = float(np.clip(1.0 + opts.gain_amplitude_rms * rng.standard_normal(), 0.5, 1.5))
        phase = float(rng.uniform(-math.pi, math.pi))
        gains.append((amp * math.cos(phase), amp * math.sin(phase)))
        bandpasses.append(
            PolBandpass(
                delay_ns=float(opts.delay_rms_ns * rng.standard_normal()),
                ripple_amplitude=float(opts.ripple_amplitude * rng.uniform(0.5, 1.5)),
                ripple_period_hz=float(rng.uniform(20e6, 60e6)),
                ripple_phase_rad=float(rng.uniform(0.0, 2.0 * math.pi)),
            )
        )
    return (gains[0], gains[1]), (bandpasses[0], bandpasses[1])


def draw_instrument(seed: int, opts: CorruptionOptions, active: ArrayLike) -> InstrumentModel:
    """Draw gains and bandpasses for every station and keep the active ones.

    Args:
        seed: Simulation seed.
        opts: Corruption switches and scales.
        active: Active station numbers.

    Returns:
        The instrument model of the active stations.
    """
    rng = np.random.default_rng([seed, GAIN_STREAM])
    wanted = {int(s) for s in np.asarray(active)}
    antennas = []
    for station in range(1, instrument.N_STATIONS + 1):
        gain, bandpass = _draw_station(rng, opts)
        if station in wanted:
            antennas.append(AntennaGain(station=station, gain=gain, bandpass=bandpass))
    return InstrumentModel(
        gains_applied=opts.gains,
        bandpass_applied=opts.bandpass,
        rolloff_depth=opts.rolloff_depth,
        antennas=tuple(antennas),
    )
