"""The drift- and band-averaged Airy beam on an image grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs import WCS

from dsa_stream.beam import airy_power
from dsa_stream.imaging.primary_beam import (
    beam_at,
    beam_image,
    drift_extent_deg,
    effective_frequency,
    pb_corrected,
)


def _sin_wcs(ra0: float, dec0: float, n: int, cell_deg: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [n / 2 + 1, n / 2 + 1]
    w.wcs.cdelt = [-cell_deg, cell_deg]
    w.wcs.radesys = "ICRS"
    return w


def _drift(ra_mid: float, dec: float, n_t: int = 24, span_deg: float = 1.292) -> np.ndarray:
    ra = ra_mid + np.linspace(-span_deg / 2, span_deg / 2, n_t)
    return np.stack([ra % 360.0, np.full(n_t, dec)], axis=1)


def test_single_pointing_single_channel_is_the_airy_pattern() -> None:
    pointing = np.array([[120.0, 40.0]])
    dec = np.linspace(40.0, 43.0, 31)
    ra = np.full(dec.size, 120.0)
    got = beam_at(ra, dec, pointing, np.array([1.4e9]), np.ones((1, 1)))
    want = airy_power(np.radians(dec - 40.0), 1.4e9)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_band_average_weights_channels() -> None:
    pointing = np.array([[10.0, 30.0]])
    freqs = np.array([1.3e9, 1.5e9])
    ra, dec = np.array([10.0]), np.array([31.5])
    theta = math.radians(1.5)
    flat = beam_at(ra, dec, pointing, freqs, np.ones((1, 2)))[0]
    assert flat == pytest.approx(airy_power(theta, freqs).mean(), abs=1e-6)
    low_only = beam_at(ra, dec, pointing, freqs, np.array([[1.0, 0.0]]))[0]
    assert low_only == pytest.approx(float(airy_power(theta, 1.3e9)), abs=1e-6)
    assert effective_frequency(freqs, np.array([[3.0, 1.0]])) == pytest.approx(1.35e9)


def test_drift_widens_the_beam_in_ra_and_lowers_the_peak() -> None:
    dec0 = 20.0
    pointing = _drift(200.0, dec0)
    freqs = np.array([1.405e9])
    w = np.ones((24, 1))
    peak = beam_at(np.array([200.0]), np.array([dec0]), pointing, freqs, w)[0]
    assert 0.95 < peak < 1.0
    off = 1.5
    along_ra = beam_at(
        np.array([200.0 + off / math.cos(math.radians(dec0))]), np.array([dec0]), pointing, freqs, w
    )[0]
    along_dec = beam_at(np.array([200.0]), np.array([dec0 + off]), pointing, freqs, w)[0]
    assert along_ra > along_dec + 0.02
    assert drift_extent_deg(pointing) == pytest.approx(
        1.292 * math.cos(math.radians(dec0)), rel=1e-3
    )


def test_time_weights_move_the_beam() -> None:
    pointing = _drift(50.0, 10.0)
    freqs = np.array([1.405e9])
    early = np.zeros((24, 1))
    early[0] = 1.0
    ra0, dec0 = pointing[0]
    assert beam_at(np.array([ra0]), np.array([dec0]), pointing, freqs, early)[0] == pytest.approx(
        1.0
    )


def test_beam_image_matches_exact_evaluation_across_ra_zero() -> None:
    n, cell = 600, 0.01
    wcs = _sin_wcs(359.8, 54.6, n, cell)
    pointing = _drift(359.8, 54.6)
    freqs = np.linspace(1.311e9, 1.499e9, 16)
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.5, 1.5, (24, 16))
    img = beam_image(wcs, (n, n), pointing, freqs, weights, max_grid=128)
    assert img.dtype == np.float32 and img.shape == (n, n)
    ys, xs = rng.integers(0, n, 200), rng.integers(0, n, 200)
    ra, dec = wcs.pixel_to_world_values(xs, ys)
    exact = beam_at(np.asarray(ra), np.asarray(dec), pointing, freqs, weights)
    np.testing.assert_allclose(img[ys, xs], exact, atol=2e-5)
    # the field straddles RA 0: the beam is symmetric about the mid pointing in RA
    cy = n // 2
    row = img[cy]
    assert np.argmax(row) == pytest.approx(n // 2, abs=1)


def test_pb_corrected_blanks_below_cutoff() -> None:
    image = np.full((3, 3), 2.0, dtype=np.float32)
    beam = np.array([[1.0, 0.5, 0.2], [0.19, np.nan, 0.25], [0.0, 0.8, 0.4]], dtype=np.float32)
    out = pb_corrected(image, beam, 0.2)
    assert out[0, 0] == pytest.approx(2.0) and out[0, 1] == pytest.approx(4.0)
    assert out[0, 2] == pytest.approx(10.0)
    assert np.isnan(out[1, 0]) and np.isnan(out[1, 1]) and np.isnan(out[2, 0])


def test_zero_weights_are_rejected() -> None:
    with pytest.raises(ValueError, match="zero"):
        beam_at(
            np.array([0.0]),
            np.array([0.0]),
            np.array([[0.0, 0.0]]),
            np.array([1e9]),
            np.zeros((1, 1)),
        )
