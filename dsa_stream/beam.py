"""Primary beam of a DSA-110 dish: the Airy pattern of a uniformly illuminated 4.65 m aperture.

The power pattern of a circular aperture of diameter ``D`` with uniform illumination is

    P(theta, nu) = (2 J1(x) / x)**2,    x = pi * D * sin(theta) / lambda,  lambda = c / nu

with ``J1`` the Bessel function of the first kind of order one and ``P(0) = 1``. ``theta``
is the angle between the source and the pointing centre. Its half-power full width is
``2 * arcsin(1.6163 * lambda / (pi * D))``, about ``1.029 lambda / D`` (2.72 deg at
1.4 GHz), and its first null lies at ``sin(theta) = 1.2197 lambda / D`` (3.21 deg at
1.4 GHz). The first sidelobe peaks at 1.75 % of the main lobe.

This is the model that the simulator applies to every source and that imaging and
mosaicking use for primary-beam correction. It is a power beam (the product of the
two voltage patterns of a baseline), appropriate for an unpolarised source seen by
identical dishes; it ignores feed legs, blockage and frequency-dependent
illumination tapers of the real dishes.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import j1

from dsa_stream.instrument import C_M_S, DISH_DIAMETER_M

#: Name of the model, as recorded in truth files and image headers.
BEAM_MODEL_NAME = "airy"
#: Argument x at which (2 J1(x)/x)^2 = 1/2 (half power).
AIRY_HALF_POWER_X = 1.616339948310703
#: First zero of J1: the first null of the pattern, x = 3.8317...
AIRY_FIRST_NULL_X = 3.831705970207513


def airy_power(
    theta_rad: ArrayLike, freq_hz: ArrayLike, diameter_m: float = DISH_DIAMETER_M
) -> NDArray[np.float64]:
    """Airy power pattern, normalised to 1 on axis.

    ``theta_rad`` and ``freq_hz`` broadcast against each other with numpy rules, so
    ``airy_power(theta[:, None], freqs[None, :])`` gives a (n_theta, n_freq) table.

    Args:
        theta_rad: Angle(s) from the pointing centre, radians.
        freq_hz: Frequency or frequencies, Hz (positive).
        diameter_m: Dish diameter, m.

    Returns:
        The power response, in [0, 1], with the broadcast shape of the inputs.

    Raises:
        ValueError: if a frequency or the diameter is not positive.
    """
    theta = np.asarray(theta_rad, dtype=np.float64)
    freq = np.asarray(freq_hz, dtype=np.float64)
    if diameter_m <= 0 or np.any(freq <= 0):
        raise ValueError("frequencies and the dish diameter must be positive")
    x = np.pi * diameter_m * np.abs(np.sin(theta)) * freq / C_M_S
    small = x < 1e-8
    safe = np.where(small, 1.0, x)
    pattern = np.where(small, 1.0, 2.0 * j1(safe) / safe)
    return np.asarray(pattern * pattern, dtype=np.float64)


def airy_fwhm_rad(freq_hz: ArrayLike, diameter_m: float = DISH_DIAMETER_M) -> NDArray[np.float64]:
    """Full width at half power of the Airy power pattern, radians.

    Args:
        freq_hz: Frequency or frequencies, Hz.
        diameter_m: Dish diameter, m.

    Returns:
        ``2 * arcsin(1.6163 * lambda / (pi * D))`` with the shape of ``freq_hz``.
    """
    freq = np.asarray(freq_hz, dtype=np.float64)
    if diameter_m <= 0 or np.any(freq <= 0):
        raise ValueError("frequencies and the dish diameter must be positive")
    s = AIRY_HALF_POWER_X * C_M_S / (freq * math.pi * diameter_m)
    return np.asarray(2.0 * np.arcsin(np.clip(s, 0.0, 1.0)), dtype=np.float64)


def airy_first_null_rad(
    freq_hz: ArrayLike, diameter_m: float = DISH_DIAMETER_M
) -> NDArray[np.float64]:
    """Angle of the first null of the Airy pattern (``arcsin(1.2197 lambda / D)``), radians."""
    freq = np.asarray(freq_hz, dtype=np.float64)
    if diameter_m <= 0 or np.any(freq <= 0):
        raise ValueError("frequencies and the dish diameter must be positive")
    s = AIRY_FIRST_NULL_X * C_M_S / (freq * math.pi * diameter_m)
    return np.asarray(np.arcsin(np.clip(s, 0.0, 1.0)), dtype=np.float64)
