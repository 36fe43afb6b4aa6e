"""FITS products: valid WCS, RA in [0, 360), every provenance keyword, one grid, atomic writes."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import wcs as awcs
from astropy.io import fits
from astropy.time import Time
from casacore import tables

from dsa_stream import naming
from dsa_stream.imaging.fitsio import KEYWORDS, celestial_header, write_fits_atomic
from dsa_stream.imaging.msinfo import read_ms_info
from dsa_stream.imaging.options import ImagingResult

from .conftest import Field

KINDS = ("image", "residual", "pb", "pbcor")


def _validate_messages(path: Path) -> list[str]:
    """The problems ``astropy.wcs.validate`` reports (it records them, it does not warn).

    Its first pass (finding the WCSs) emits an informational wcslib warning about the
    header's END padding into a recorder; pytest's error filter must not turn it into
    an exception, so warnings are left at their default action here.
    """
    messages = []
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        report = awcs.validate(str(path))
    for hdu in report:
        for result in hdu:
            messages += [str(m) for m in result]
    return messages


def _wsclean_like_header(crval1: float, crval2: float = 54.6) -> fits.Header:
    h = fits.Header()
    h["NAXIS"] = 4
    for k, (ctype, crval, cdelt, crpix) in enumerate(
        [
            ("RA---SIN", crval1, -3.0 / 3600, 513.0),
            ("DEC--SIN", crval2, 3.0 / 3600, 513.0),
            ("FREQ", 1.405e9, 1.875e8, 1.0),
            ("STOKES", 1.0, 1.0, 1.0),
        ],
        start=1,
    ):
        h[f"NAXIS{k}"] = 1024 if k < 3 else 1
        h[f"CTYPE{k}"], h[f"CRVAL{k}"], h[f"CDELT{k}"], h[f"CRPIX{k}"] = ctype, crval, cdelt, crpix
    h["EQUINOX"] = 2000.0
    h["DATE-OBS"] = "1858-11-17T00:00:00.0"  # what WSClean 3.1 writes
    return h


@pytest.mark.parametrize("crval1,want", [(-103.74, 256.26), (-0.25, 359.75), (12.5, 12.5)])
def test_celestial_header_wraps_negative_ra(crval1: float, want: float) -> None:
    h = celestial_header(_wsclean_like_header(crval1), cell_arcsec=3.0)
    assert h["CRVAL1"] == pytest.approx(want) and 0.0 <= h["CRVAL1"] < 360.0
    assert h["WCSAXES"] == 2 and h["RADESYS"] == "ICRS" and "EQUINOX" not in h
    assert "DATE-OBS" not in h  # the imager's bogus epoch is never copied
    assert h["CDELT1"] == -3.0 / 3600 and h["CDELT2"] == 3.0 / 3600


@pytest.mark.parametrize(
    "ra,dec",
    [(359.85567353, 33.1465723), (0.001, 10.0), (120.0, -30.0), (256.3, 54.6), (10.0, 89.5)],
)
def test_j2000_centre_is_converted_to_icrs_as_casacore_does(ra: float, dec: float) -> None:
    """WSClean writes casacore's J2000 centre (EQUINOX 2000): back to the MS's ICRS exactly."""
    from casacore.measures import measures

    dm = measures()
    j2000 = dm.measure(dm.direction("ICRS", f"{ra}deg", f"{dec}deg"), "J2000")
    jra, jdec = (math.degrees(j2000[k]["value"]) for k in ("m0", "m1"))
    assert abs(jra % 360.0 - ra) + abs(jdec - dec) > 3e-6  # ~20 mas apart
    h = celestial_header(_wsclean_like_header(jra - 360.0 * (jra > 180), jdec), cell_arcsec=3.0)
    assert h["CRVAL1"] == pytest.approx(ra, abs=1e-10) and h["CRVAL2"] == pytest.approx(
        dec, abs=1e-10
    )
    icrs = _wsclean_like_header(ra, dec)
    icrs["RADESYS"] = "ICRS"
    del icrs["EQUINOX"]
    assert celestial_header(icrs, cell_arcsec=3.0)["CRVAL2"] == dec  # CASA: ICRS as is


def test_celestial_header_rejects_other_frames() -> None:
    from dsa_stream.exceptions import ImagingError

    h = _wsclean_like_header(10.0)
    h["EQUINOX"] = 1950.0
    with pytest.raises(ImagingError, match="unsupported image frame"):
        celestial_header(h, cell_arcsec=3.0)


def test_celestial_header_rejects_another_cell() -> None:
    from dsa_stream.exceptions import ImagingError

    with pytest.raises(ImagingError, match="pixels of"):
        celestial_header(_wsclean_like_header(10.0), cell_arcsec=4.0)


def test_write_fits_atomic_leaves_no_temporary(tmp_path: Path) -> None:
    h = celestial_header(_wsclean_like_header(10.0), cell_arcsec=3.0)
    path = tmp_path / "x.image.fits"
    write_fits_atomic(path, np.ones((8, 8), dtype=np.float32), h)
    write_fits_atomic(path, np.zeros((8, 8), dtype=np.float32), h)
    assert [p.name for p in tmp_path.iterdir()] == ["x.image.fits"]
    assert fits.getdata(path).sum() == 0


@pytest.mark.wsclean
def test_products_exist_share_one_grid_and_validate(wsclean_result: ImagingResult) -> None:
    p = wsclean_result.products
    headers = {}
    for kind in KINDS:
        path = getattr(p, kind)
        assert path.exists() and naming.parse_image_product(path.name).kind == kind
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no FITSFixedWarning, no VerifyWarning
            with fits.open(path) as hdul:
                hdul.verify("exception")
                header = hdul[0].header
                data = hdul[0].data
                w = awcs.WCS(header)
        assert _validate_messages(path) == [], kind
        assert w.naxis == 2 and w.celestial.has_celestial
        assert data.shape == wsclean_result.shape
        assert data.dtype.kind == "f" and data.dtype.itemsize == 4  # float32 (big-endian)
        headers[kind] = header
    keys = ("NAXIS1", "NAXIS2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2")
    for kind in KINDS:
        assert all(headers[kind][k] == headers["image"][k] for k in keys)
    assert headers["image"]["BUNIT"] == "JY/BEAM" and "BUNIT" not in headers["pb"]
    assert headers["pb"]["BTYPE"] == "Beam" and headers["pbcor"]["DSAPROD"] == "pbcor"
    pb = fits.getdata(p.pb)
    pbcor = fits.getdata(p.pbcor)
    image = fits.getdata(p.image)
    cut = headers["pbcor"]["PBCUT"]
    assert np.all(np.isnan(pbcor[pb < cut]))
    ok = pb >= cut
    np.testing.assert_allclose(pbcor[ok], image[ok] / pb[ok], rtol=1e-5)
    assert 0.9 < np.nanmax(pb) <= 1.0 and ok.mean() > 0.5
    assert p.summary.exists() and p.preview is not None and p.preview.exists()


@pytest.mark.wsclean
def test_ra_wraps_for_a_field_at_ra_zero(field: Field, wsclean_result: ImagingResult) -> None:
    """The field straddles RA 0: WSClean writes CRVAL1 < 0, the products have [0, 360)."""
    ra_ms, dec_ms = read_ms_info(field.ms).phase_centre_deg
    assert ra_ms > 359.0  # the phase centre is just below 360
    h = fits.getheader(wsclean_result.products.image)
    # WSClean writes the centre in J2000 (20 mas away); the products have the MS's ICRS
    assert h["CRVAL1"] == pytest.approx(ra_ms, abs=1e-9)
    assert h["CRVAL2"] == pytest.approx(dec_ms, abs=1e-9)
    log = wsclean_result.products.image.parent / "field.imaging.log"
    assert "wsclean" in log.read_text()
    w = awcs.WCS(h)
    ras = [s.ra_deg for s in field.expected]
    assert min(ras) < 5.0 and max(ras) > 355.0  # sources on both sides of RA 0
    for src in field.expected:
        x, y = w.world_to_pixel_values(src.ra_deg, src.dec_deg)
        assert 0 < x < h["NAXIS1"] and 0 < y < h["NAXIS2"]
    measured = {s.name: s for s in wsclean_result.qa.sources}
    for src in field.expected:
        m = measured[src.name]
        assert m.measured_ra_deg is not None and 0.0 <= m.measured_ra_deg < 360.0


@pytest.mark.wsclean
def test_header_has_every_provenance_keyword(field: Field, wsclean_result: ImagingResult) -> None:
    h = fits.getheader(wsclean_result.products.image)
    info = read_ms_info(field.ms)
    for key in KEYWORDS:
        if key.endswith("n"):  # CALTABn ... : one per table, two here
            assert all(f"{key[:-1]}{k}" in h for k in (1, 2)), key
            continue
        if key == "SW*":
            sw = [k for k in h if k.startswith("SW")]
            assert {"SWDSA", "SWNUMPY", "SWASTROP", "SWWSCLEA", "SWCASATL"} <= set(sw)
            assert h["SWWSCLEA"] == wsclean_result.backend_version
            continue
        if key == "BUNIT" or key == "BTYPE":
            assert key in h
            continue
        assert key in h, key
    assert h["TELESCOP"] == "DSA-110" and h["BACKEND"] == "wsclean"
    assert h["DSAGROUP"] == wsclean_result.group_key == info.group_key()
    assert h["CFGHASH"] == "test" and h["OPTHASH"] == wsclean_result.options_hash
    # the calibration stage's set: bandpass then gains, solved on the 3C48 group
    assert h["NCALTAB"] == 2 and h["DATACOL"] == "CORRECTED_DATA"
    assert (h["CALTAB1"], h["CALTAB2"]) == tuple(p.name for p in field.caltables)
    assert (h["CALTYP1"], h["CALTYP2"]) == ("B Jones", "G Jones")
    cal = field.truth.groups[field.calibrator_group]
    for k in (1, 2):
        assert cal.start_mjd <= h[f"CALMJD{k}"] <= cal.end_mjd
        assert Time(h[f"CALOBS{k}"], scale="utc").mjd == pytest.approx(h[f"CALMJD{k}"], abs=1e-8)
    assert [r.path for r in wsclean_result.calibration] == [str(p) for p in field.caltables]
    assert all(r.source == "ms-calibration-record" for r in wsclean_result.calibration)
    # observation times from the data, not the clock
    assert h["MJD-OBS"] == pytest.approx(info.time_start_mjd, abs=1e-9)
    assert h["MJD-END"] == pytest.approx(info.time_end_mjd, abs=1e-9)
    assert Time(h["DATE-OBS"], scale="utc").mjd == pytest.approx(h["MJD-OBS"], abs=1e-8)
    assert h["FREQREF"] == pytest.approx(1.405e9, rel=1e-6)
    assert h["BMAJ"] * 3600 == pytest.approx(wsclean_result.beam.bmaj_arcsec)
    assert h["QAPASS"] is True and h["QAFAIL"] == "none"
    assert h["QARMS"] == pytest.approx(wsclean_result.qa.rms_jy)
    history = "\n".join(str(c) for c in h["HISTORY"])
    assert "-reorder" in history and "-no-reorder" not in history.replace(" ", "")
    assert "pbcor = image / pb" in history


@pytest.mark.wsclean
def test_wsclean_does_not_modify_the_ms(field: Field, wsclean_result: ImagingResult) -> None:
    with tables.table(str(field.ms), ack=False) as ms:
        cols = set(ms.colnames())
    assert cols == field.columns and "MODEL_DATA" not in cols
    leftovers = [p.name for p in wsclean_result.products.image.parent.iterdir()]
    assert not any(name.startswith(".") for name in leftovers), leftovers


@pytest.mark.wsclean
def test_png_preview_is_a_real_picture(wsclean_result: ImagingResult) -> None:
    png = wsclean_result.products.preview
    assert png is not None
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png))
    assert img.shape[0] > 400 and img.shape[1] > 400
    assert float(np.std(img[..., :3])) > 0.05  # not blank


@pytest.mark.casa
def test_tclean_products_validate(tclean_result: ImagingResult) -> None:
    for kind in KINDS:
        path = getattr(tclean_result.products, kind)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            awcs.WCS(fits.getheader(path))
        assert _validate_messages(path) == [], kind
    h = fits.getheader(tclean_result.products.image)
    assert h["BACKEND"] == "tclean" and h["BACKVER"].startswith("CASA ")
    ra_ms, dec_ms = read_ms_info(tclean_result.ms_path).phase_centre_deg
    assert h["CRVAL1"] == pytest.approx(ra_ms, abs=1e-9)
    assert h["CRVAL2"] == pytest.approx(dec_ms, abs=1e-9)
    assert h["NCALTAB"] == 2 and h["DATACOL"] == "CORRECTED_DATA"
    log = tclean_result.products.image.parent / "field.imaging.log"
    assert "CASA log" in log.read_text() and "Run Major Cycle" in log.read_text()
    assert 0.0 <= h["CRVAL1"] < 360.0 and h["SWCASATL"] != "absent"
    assert "tclean" in "\n".join(str(c) for c in h["HISTORY"])
