"""The bundled calibrator catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from dsa_stream.calibration.catalog import (
    PerleyButlerFlux,
    PowerLawFlux,
    angular_separation_deg,
    get_calibrator,
    load_catalog,
    parse_dec,
    parse_ra,
)
from dsa_stream.exceptions import CalibrationError

#: S(1.4 GHz) of the Perley & Butler (2017) models, evaluated from the coefficients of
#: their Table 6 as stored in casadata 2025.9.22 (nrao/VLA/standards/PerleyButler2017Coeffs).
PB2017_AT_1400MHZ = {
    "3C286": 15.08,
    "3C48": 16.26,
    "3C147": 22.17,
    "3C138": 8.56,
    "3C295": 22.50,
    "3C196": 14.43,
    "3C380": 13.14,
}


@pytest.mark.parametrize(("name", "flux"), sorted(PB2017_AT_1400MHZ.items()))
def test_perley_butler_fluxes_at_1400_mhz(name, flux):
    cal = get_calibrator(name)
    assert isinstance(cal.flux, PerleyButlerFlux)
    assert float(cal.flux_jy(1.4e9)) == pytest.approx(flux, rel=0.01)


def test_flux_is_vectorised():
    freqs = np.linspace(1.31e9, 1.5e9, 5)
    s = get_calibrator("3C286").flux_jy(freqs)
    assert s.shape == (5,) and np.all(np.diff(s) < 0)
    pl = PowerLawFlux(flux_jy=2.0, spectral_index=-0.7)
    np.testing.assert_allclose(pl.flux_jy_at([1.4e9, 2.8e9]), [2.0, 2.0 * 2**-0.7])


def test_lookup_is_case_insensitive_and_knows_aliases():
    assert get_calibrator("3c286").name == "3C286"
    assert get_calibrator("3C 286").name == "3C286"
    assert get_calibrator("j1331+3030").name == "3C286"
    assert get_calibrator("1328+307").name == "3C286"
    assert get_calibrator("J0834+5534").name == "4C55.16"
    assert get_calibrator("3c454.3").name == "3C454.3"
    assert get_calibrator("j2253+1608").name == "3C454.3"


def test_unknown_name_lists_close_names():
    with pytest.raises(CalibrationError, match="close names: .*3C286"):
        get_calibrator("3C2886")
    with pytest.raises(CalibrationError, match="unknown calibrator"):
        get_calibrator("Vega")


def test_positions():
    c = get_calibrator("3C286")
    assert c.ra_deg == pytest.approx(202.784534, abs=1e-5)
    assert c.dec_deg == pytest.approx(30.509155, abs=1e-5)
    c = get_calibrator("3C454.3")
    assert c.ra_deg == pytest.approx(parse_ra("22h53m57.747932s"))
    assert c.dec_deg == pytest.approx(16.148211, abs=1e-5)
    assert parse_dec("-01d30'00\"") == -1.5
    with pytest.raises(CalibrationError):
        parse_ra("25h00m00s")


def test_catalogue_covers_the_dsa_declinations():
    cats = load_catalog()
    assert 20 <= len(cats) <= 40
    decs = np.array([c.dec_deg for c in cats])
    assert decs.min() < 5 and decs.max() > 75
    assert all(0 <= d <= 90 for d in decs)
    # calibrators near the common DSA-110 strips
    for dec in (16.27, 54.57, 71.6):
        assert np.min(np.abs(decs - dec)) < 1.1
    names = {c.name for c in cats}
    assert {
        "3C48",
        "3C138",
        "3C147",
        "3C286",
        "3C295",
        "3C84",
        "3C273",
        "3C380",
        "3C454.3",
        "4C55.16",
        "3C309.1",
    } <= names


def test_separation():
    assert angular_separation_deg(10, 20, 10, 21) == pytest.approx(1.0)
    assert angular_separation_deg(0, 89, 180, 89) == pytest.approx(2.0)


@pytest.mark.casa
def test_coefficients_match_casadata_perley_butler_2017():
    """The coefficients are those CASA's setjy uses (PerleyButler2017Coeffs, epoch 2017.0)."""
    from pathlib import Path

    from dsa_stream import casa_env

    tools = casa_env.casatools()
    import casadata

    table = Path(casadata.datapath) / "nrao" / "VLA" / "standards" / "PerleyButler2017Coeffs"
    tb = tools.table()
    tb.open(str(table))
    try:
        epochs = tb.getcol("Epoch")
        row = int(np.argmin(np.abs(epochs - 2017.0)))
        for name in PB2017_AT_1400MHZ:
            ref = tb.getcol(f"{name}_coeffs")[:, row]
            ours = np.array(get_calibrator(name).flux.coeffs)
            padded = np.zeros(ref.size)
            padded[: ours.size] = ours
            np.testing.assert_allclose(padded, ref, atol=1e-6, err_msg=name)
    finally:
        tb.close()
