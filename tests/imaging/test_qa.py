"""Image QA on synthetic images: rms with sources masked, peak, DR, source matching, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs import WCS

from dsa_stream.imaging.options import ExpectedSource, QaOptions, RestoringBeam
from dsa_stream.imaging.qa import (
    QaInputs,
    assess,
    image_rms,
    refine_peak,
    robust_sigma,
)
from dsa_stream.imaging.restore import fit_psf_beam, gaussian_kernel, restore

N, CELL = 400, 5.0  # pixels, arcsec
BEAM = RestoringBeam(bmaj_arcsec=30.0, bmin_arcsec=20.0, bpa_deg=30.0)


def _wcs() -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [0.05, 45.0]
    w.wcs.crpix = [N / 2 + 1, N / 2 + 1]
    w.wcs.cdelt = [-CELL / 3600, CELL / 3600]
    w.wcs.radesys = "ICRS"
    return w


def _gaussian(x0: float, y0: float, amp: float, beam: RestoringBeam = BEAM) -> np.ndarray:
    yy, xx = np.mgrid[0:N, 0:N].astype(float)
    s = 2.0 * math.sqrt(2.0 * math.log(2.0))
    smaj, smin = beam.bmaj_arcsec / s / CELL, beam.bmin_arcsec / s / CELL
    t = math.radians(beam.bpa_deg)
    along = -(xx - x0) * math.sin(t) + (yy - y0) * math.cos(t)
    across = (xx - x0) * math.cos(t) + (yy - y0) * math.sin(t)
    return amp * np.exp(-0.5 * ((along / smaj) ** 2 + (across / smin) ** 2))


def test_robust_sigma_of_gaussian_noise() -> None:
    rng = np.random.default_rng(0)
    assert robust_sigma(rng.normal(0.0, 2.5, 200_000)) == pytest.approx(2.5, rel=0.01)


def test_rms_masks_sources() -> None:
    rng = np.random.default_rng(1)
    sigma = 1e-3
    image = rng.normal(0.0, sigma, (N, N)).astype(np.float32)
    for k in range(40):  # bright sources cover a good part of the image
        image += _gaussian(20 + 9 * k, 50 + 7 * k % 300, 0.2).astype(np.float32)
    region = np.ones_like(image, dtype=bool)
    naive = float(np.std(image))
    assert naive > 5 * sigma
    rms, masked = image_rms(image, region, radius_px=12.0, threshold_sigma=5.0)
    assert rms == pytest.approx(sigma, rel=0.05)
    assert 0.05 < masked < 0.9


def test_refine_peak_is_exact_for_a_gaussian() -> None:
    image = _gaussian(200.37, 150.81, 1.7)
    iy, ix = np.unravel_index(int(np.argmax(image)), image.shape)
    peak, x, y = refine_peak(image, int(iy), int(ix))
    assert peak == pytest.approx(1.7, rel=1e-6)
    assert x == pytest.approx(200.37, abs=1e-5) and y == pytest.approx(150.81, abs=1e-5)


def _inputs(image: np.ndarray, pb: np.ndarray | None = None) -> QaInputs:
    return QaInputs(
        image=image.astype(np.float32),
        residual=None,
        model=None,
        psf=None,
        pb=(pb if pb is not None else np.full(image.shape, 0.5)).astype(np.float32),
        wcs=_wcs(),
        beam=BEAM,
        cell_arcsec=CELL,
        ref_freq_hz=1.4e9,
        pb_cutoff=0.2,
    )


def test_assess_measures_flux_position_and_dynamic_range() -> None:
    rng = np.random.default_rng(2)
    sigma = 2e-3
    w = _wcs()
    sources = []
    image = rng.normal(0.0, sigma, (N, N))
    for k, (x, y, flux, alpha) in enumerate([(100.3, 120.6, 2.0, -0.7), (290.8, 300.2, 1.0, 0.0)]):
        ra, dec = (float(v) for v in w.pixel_to_world_values(x, y))
        src = ExpectedSource(
            name=f"s{k}",
            ra_deg=ra % 360,
            dec_deg=dec,
            flux_jy=flux,
            ref_freq_hz=1.3e9,
            spectral_index=alpha,
        )
        sources.append(src)
        image += _gaussian(x, y, 0.5 * src.flux_at(1.4e9))  # pb = 0.5 everywhere
    faint = ExpectedSource(name="faint", ra_deg=0.05, dec_deg=45.1, flux_jy=0.001)
    outside = ExpectedSource(name="far", ra_deg=10.0, dec_deg=45.0, flux_jy=5.0)
    report = assess(_inputs(image), [*sources, faint, outside], QaOptions())
    assert report.rms_jy == pytest.approx(sigma, rel=0.1)
    assert report.peak_jy == pytest.approx(0.5 * sources[0].flux_at(1.4e9), rel=0.02)
    assert report.dynamic_range == pytest.approx(report.peak_jy / report.rms_jy)
    by_name = {s.name: s for s in report.sources}
    assert "far" not in by_name  # outside the image
    assert not by_name["faint"].checked
    for src in sources:
        m = by_name[src.name]
        assert m.checked and m.found
        assert m.flux_ratio == pytest.approx(1.0, abs=0.01)
        assert m.offset_beams < 0.02
        assert m.expected_flux_jy == pytest.approx(src.flux_at(1.4e9))
    assert report.n_checked == 2 and report.passed
    assert {c.name: c.status for c in report.checks}["flux_scale"] == "pass"


def test_failures_are_recorded_not_raised() -> None:
    rng = np.random.default_rng(3)
    w = _wcs()
    ra, dec = (float(v) for v in w.pixel_to_world_values(200.0, 200.0))
    ra2, dec2 = (float(v) for v in w.pixel_to_world_values(80.0, 300.0))
    image = rng.normal(0.0, 1e-3, (N, N)) + _gaussian(200.0, 200.0, 0.4)
    expected = [
        ExpectedSource(name="dim", ra_deg=ra % 360, dec_deg=dec, flux_jy=1.0),  # 0.4 of 0.5
        ExpectedSource(name="missing", ra_deg=ra2 % 360, dec_deg=dec2, flux_jy=1.0),
    ]
    opts = QaOptions(max_rms_jy=1e-4, min_dynamic_range=1e6, max_flux_error=0.1)
    report = assess(_inputs(image), expected, opts)
    assert not report.passed
    assert set(report.failures()) == {"rms", "dynamic_range", "detections", "flux_scale"}
    status = {c.name: c.status for c in report.checks}
    assert status["astrometry"] == "pass" and status["beam"] == "skipped"


def test_no_expected_sources_skips_source_checks() -> None:
    image = np.random.default_rng(4).normal(0.0, 1e-3, (N, N))
    report = assess(_inputs(image), [], QaOptions())
    assert report.passed
    status = {c.name: c.status for c in report.checks}
    assert status["flux_scale"] == "skipped" and status["detections"] == "skipped"


@pytest.mark.parametrize("pa", [0.0, 30.0, 90.0, -45.0])
def test_psf_fit_recovers_beam_and_orientation(pa: float) -> None:
    beam = RestoringBeam(bmaj_arcsec=40.0, bmin_arcsec=22.0, bpa_deg=pa)
    psf = _gaussian(N / 2, N / 2, 1.0, beam)
    # a broad plateau below half power (like the DSA-110 core) must not bias the fit
    psf += (
        0.3
        * _gaussian(
            N / 2, N / 2, 1.0, RestoringBeam(bmaj_arcsec=400.0, bmin_arcsec=300.0, bpa_deg=0.0)
        )
        * (psf < 0.1)
    )
    got = fit_psf_beam(psf, CELL)
    assert got.bmaj_arcsec == pytest.approx(40.0, rel=0.03)
    assert got.bmin_arcsec == pytest.approx(22.0, rel=0.03)
    assert (got.bpa_deg - pa + 90) % 180 - 90 == pytest.approx(0.0, abs=1.0)


def test_kernel_orientation_pa_zero_is_north_south() -> None:
    k = gaussian_kernel(RestoringBeam(bmaj_arcsec=50.0, bmin_arcsec=10.0, bpa_deg=0.0), CELL)
    c = k.shape[0] // 2
    assert k[c + 4, c] > 0.5 > k[c, c + 4]  # extended along y (Dec)
    k = gaussian_kernel(RestoringBeam(bmaj_arcsec=50.0, bmin_arcsec=10.0, bpa_deg=90.0), CELL)
    assert k[c, c - 4] > 0.5 > k[c + 4, c]  # extended along x (RA, east = -x)


def test_restore_point_component_peak_equals_flux() -> None:
    model = np.zeros((N, N))
    model[150, 220] = 1.25
    residual = np.zeros((N, N))
    residual[150, 220] = 0.01
    out = restore(model, residual, BEAM, CELL)
    assert out[150, 220] == pytest.approx(1.26, rel=1e-6)
    assert out.dtype == np.float32


def _psf_with_plateau(beam: RestoringBeam, x0: float, y0: float) -> np.ndarray:
    """A DSA-110-like PSF centred on (x0, y0): a narrow main lobe on a broad plateau."""
    wide = RestoringBeam(bmaj_arcsec=300.0, bmin_arcsec=250.0, bpa_deg=0.0)
    return 0.85 * _gaussian(x0, y0, 1.0, beam) + 0.15 * _gaussian(x0, y0, 1.0, wide)


def test_flux_measures_of_a_source_between_pixels() -> None:
    """A source at a pixel corner, its clean components on the four pixels around it.

    The PSF fit to the rebuilt dirty image (residual + components * PSF) recovers the
    flux and the position; ``flux_measure`` chooses which measurement is checked.
    """
    rng = np.random.default_rng(5)
    main = RestoringBeam(bmaj_arcsec=18.0, bmin_arcsec=15.0, bpa_deg=40.0)  # 3-3.6 px
    x0, y0, amp = 200.5, 150.5, 0.3
    psf = _psf_with_plateau(main, N / 2, N / 2)
    dirty = amp * _psf_with_plateau(main, x0, y0)
    model = np.zeros((N, N))
    residual = dirty + rng.normal(0, 1e-4, (N, N))
    for dy in (0, 1):
        for dx in (0, 1):
            model[int(y0) + dy, int(x0) + dx] = amp / 4
            residual -= amp / 4 * _psf_with_plateau(main, int(x0) + dx, int(y0) + dy)
    beam = fit_psf_beam(psf, CELL)
    image = restore(model, residual, beam, CELL)
    ra, dec = (float(v) for v in _wcs().pixel_to_world_values(x0, y0))
    src = ExpectedSource(name="corner", ra_deg=ra % 360, dec_deg=dec, flux_jy=2 * amp)
    q = QaInputs(
        image=image,
        residual=residual.astype(np.float32),
        model=model.astype(np.float32),
        psf=psf.astype(np.float32),
        pb=np.full((N, N), 0.5, dtype=np.float32),
        wcs=_wcs(),
        beam=beam,
        cell_arcsec=CELL,
        ref_freq_hz=1.4e9,
        pb_cutoff=0.2,
    )
    for measure in ("psf_fit", "peak", "components"):
        m = assess(q, [src], QaOptions(flux_measure=measure)).sources[0]
        assert m.found and m.checked and m.offset_beams < 0.03
        chosen = {
            "psf_fit": m.psf_flux_jy,
            "peak": m.peak_flux_jy,
            "components": m.component_flux_jy,
        }
        assert m.measured_flux_jy == chosen[measure]
        assert m.flux_ratio == pytest.approx(m.measured_flux_jy / m.expected_flux_jy)
    assert m.psf_flux_jy / m.expected_flux_jy == pytest.approx(1.0, abs=0.005)
    for other in (m.peak_flux_jy, m.component_flux_jy):
        assert other / m.expected_flux_jy == pytest.approx(1.0, abs=0.1)


def test_psf_fit_rebuilds_the_dirty_image_of_the_source() -> None:
    """A source left partly in the residual (shallow clean) is measured in full."""
    beam = RestoringBeam(bmaj_arcsec=30.0, bmin_arcsec=20.0, bpa_deg=-20.0)
    psf = _gaussian(N / 2, N / 2, 1.0, beam)
    x0, y0, amp = 120.0, 260.0, 0.8
    model = np.zeros((N, N))
    model[int(y0), int(x0)] = 0.6 * amp  # clean stopped early: 40 % still in the residual
    residual = _gaussian(x0, y0, 0.4 * amp, beam)
    image = restore(model, residual, beam, CELL)
    ra, dec = (float(v) for v in _wcs().pixel_to_world_values(x0, y0))
    src = ExpectedSource(name="half", ra_deg=ra % 360, dec_deg=dec, flux_jy=amp)
    q = QaInputs(
        image=image,
        residual=residual.astype(np.float32),
        model=model.astype(np.float32),
        psf=psf.astype(np.float32),
        pb=np.ones((N, N), dtype=np.float32),
        wcs=_wcs(),
        beam=beam,
        cell_arcsec=CELL,
        ref_freq_hz=1.4e9,
        pb_cutoff=0.2,
    )
    m = assess(q, [src], QaOptions()).sources[0]
    assert m.psf_flux_jy == pytest.approx(amp, rel=1e-3)
    assert m.component_flux_jy == pytest.approx(amp, rel=1e-3)
    assert m.peak_flux_jy == pytest.approx(amp, rel=1e-3)
