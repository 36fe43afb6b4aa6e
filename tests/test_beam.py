"""The Airy primary beam."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from dsa_stream.beam import (
    AIRY_FIRST_NULL_X,
    AIRY_HALF_POWER_X,
    airy_first_null_rad,
    airy_fwhm_rad,
    airy_power,
)
from dsa_stream.instrument import C_M_S, DISH_DIAMETER_M


def test_on_axis_is_one_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert airy_power(0.0, 1.4e9) == 1.0
        assert np.all(airy_power(np.zeros(3), [1.3e9, 1.4e9, 1.5e9]) == 1.0)
        assert airy_power(1e-12, 1.4e9) == pytest.approx(1.0)


def test_first_null_near_1_22_lambda_over_d():
    for nu in (1.311e9, 1.4e9, 1.499e9):
        lam = C_M_S / nu
        null = airy_first_null_rad(nu)
        assert math.sin(null) == pytest.approx(1.2197 * lam / DISH_DIAMETER_M, rel=1e-4)
        assert airy_power(null, nu) < 1e-12
        assert airy_power(0.9 * null, nu) > 1e-3
    assert math.degrees(airy_first_null_rad(1.4e9)) == pytest.approx(3.21, abs=0.01)


def test_half_power_width():
    from scipy.optimize import brentq
    from scipy.special import j1

    x_half = brentq(lambda x: (2 * j1(x) / x) ** 2 - 0.5, 1.0, 2.0, xtol=1e-15)
    assert x_half == pytest.approx(AIRY_HALF_POWER_X, rel=1e-12)
    assert brentq(j1, 3.0, 4.5, xtol=1e-15) == pytest.approx(AIRY_FIRST_NULL_X, rel=1e-12)
    fwhm = airy_fwhm_rad(1.4e9)
    assert airy_power(fwhm / 2, 1.4e9) == pytest.approx(0.5, rel=1e-9)
    lam = C_M_S / 1.4e9
    assert fwhm == pytest.approx(1.029 * lam / DISH_DIAMETER_M, rel=1e-3)
    assert math.degrees(fwhm) == pytest.approx(2.72, abs=0.01)


def test_vectorised_and_symmetric():
    theta = np.linspace(-0.1, 0.1, 7)
    freqs = np.array([1.3e9, 1.4e9, 1.5e9])
    table = airy_power(theta[:, None], freqs[None, :])
    assert table.shape == (7, 3)
    np.testing.assert_allclose(table, table[::-1])
    assert np.all(np.diff(table[3:, 0]) < 0)
    # wider beam at lower frequency
    assert np.all(table[0, 0] > table[0, 2])
    assert airy_fwhm_rad(freqs).shape == (3,)


def test_first_sidelobe_level():
    theta = np.linspace(airy_first_null_rad(1.4e9), 2 * airy_first_null_rad(1.4e9), 2000)
    assert airy_power(theta, 1.4e9).max() == pytest.approx(0.0175, abs=5e-4)


def test_bad_inputs():
    with pytest.raises(ValueError):
        airy_power(0.1, 0.0)
    with pytest.raises(ValueError):
        airy_fwhm_rad(1.4e9, diameter_m=-1.0)
