"""Post-conversion checks: meridian coherence at any Dec, and broken MSs fail clearly."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import EarthLocation
from astropy.time import Time
from casacore import tables

from dsa_stream import instrument
from dsa_stream.conversion.api import expectation
from dsa_stream.conversion.inputs import read_group
from dsa_stream.conversion.options import ValidationOptions
from dsa_stream.conversion.validate import (
    check_meridian_coherence,
    validate_in_process,
    validate_ms,
)
from dsa_stream.exceptions import ConversionError
from dsa_stream.simulate.schedule import apparent_to_icrs, lst_rad

from .conftest import FAST_CHECKS, fast_options

SITE = EarthLocation.from_geodetic(
    instrument.SITE_LON_DEG, instrument.SITE_LAT_DEG, instrument.SITE_ALT_M
)


def _centres(dec_deg: float, n: int = 24):
    start = Time("2025-10-02T03:00:00", scale="utc").jd
    jd = start + (np.arange(n) + 0.5) * instrument.INTEGRATION_S / 86400.0
    lst = lst_rad(jd)
    ra, dec = apparent_to_icrs(jd, lst, np.full(n, math.radians(dec_deg)))
    return jd - 2400000.5, ra, dec


@pytest.mark.parametrize("dec_deg", [16.0, 54.6, 71.6, 85.0])
def test_meridian_drift_is_coherent_at_any_dec(dec_deg):
    mjd, ra, dec = _centres(dec_deg)
    msg = check_meridian_coherence(mjd, ra, dec, math.radians(dec_deg), SITE)
    assert "on the meridian" in msg
    # The old rule (separation within 20% of 15 deg/h x dt, ignoring cos Dec) would
    # call this incoherent above Dec ~37 deg; ours must not.


def test_dec_jump_is_incoherent():
    mjd, ra, dec = _centres(54.6)
    dec = dec.copy()
    dec[10] += math.radians(5 / 3600)
    with pytest.raises(ConversionError, match="off the pointing Dec"):
        check_meridian_coherence(mjd, ra, dec, math.radians(54.6), SITE)


def test_ra_not_following_lst_is_incoherent():
    mjd, ra, dec = _centres(16.0)
    with pytest.raises(ConversionError, match="RA does not follow LST"):
        check_meridian_coherence(mjd, np.full_like(ra, ra[0]), dec, math.radians(16.0), SITE)


@pytest.fixture
def broken(small_ms, small_group, tmp_path):
    """A copy of the small MS, its expectation and the options to validate it."""
    src, _ = small_ms
    ms = tmp_path / "broken.ms"
    shutil.copytree(src, ms)
    exp = expectation(read_group(small_group[0]), fast_options())
    return ms, exp


def _put(ms: Path, col: str, func, sub: str = "") -> None:
    with tables.table(f"{ms}/{sub}" if sub else str(ms), ack=False, readonly=False) as tb:
        tb.putcol(col, func(tb.getcol(col)))


def test_intact_copy_validates(broken):
    ms, exp = broken
    names = [r.name for r in validate_in_process(ms, exp, FAST_CHECKS)]
    assert names == ["structure", "frequency order", "time range", "uvw", "phase centres"]


BREAKAGES = {
    "descending channels": (
        lambda ms: _put(ms, "CHAN_FREQ", lambda f: f[:, ::-1].copy(), "SPECTRAL_WINDOW"),
        "frequency order.*not ascending",
    ),
    "negative widths": (
        lambda ms: _put(ms, "CHAN_WIDTH", lambda w: -w, "SPECTRAL_WINDOW"),
        "CHAN_WIDTH is not positive",
    ),
    "gap in channels": (
        lambda ms: _put(
            ms, "CHAN_FREQ", lambda f: f + (np.arange(f.shape[1]) >= 32) * 1e6, "SPECTRAL_WINDOW"
        ),
        "not contiguous",
    ),
    "stretched uvw": (
        lambda ms: _put(
            ms, "UVW", lambda u: u * np.where(np.arange(len(u)) == 40, 1.01, 1.0)[:, None]
        ),
        "baseline length",
    ),
    "uvw of the wrong centre": (
        lambda ms: (
            _put(ms, "PHASE_DIR", lambda d: d + np.radians(0.2), "FIELD")
            or _put(ms, "REFERENCE_DIR", lambda d: d + np.radians(0.2), "FIELD")
            or _put(ms, "DELAY_DIR", lambda d: d + np.radians(0.2), "FIELD")
        ),
        "UVW and phase centre are inconsistent",
    ),
    "time shifted": (
        lambda ms: _put(ms, "TIME", lambda t: t + 30.0),
        "time range",
    ),
    "observation range": (
        lambda ms: _put(ms, "TIME_RANGE", lambda t: t + np.array([[0.0, 100.0]]), "OBSERVATION"),
        "TIME_RANGE",
    ),
    "telescope name": (
        lambda ms: _put(ms, "TELESCOPE_NAME", lambda n: ["OVRO_MMA"], "OBSERVATION"),
        "TELESCOPE_NAME is 'OVRO_MMA'",
    ),
    "centre jumps in Dec": (
        lambda ms: _put(
            ms,
            "DEC_ICRS",
            lambda d: d + np.where(np.arange(d.size) == 7, 1e-4, 0.0),
            "DSA_MERIDIAN_CENTRES",
        ),
        "off the pointing Dec",
    ),
    "centre RA frozen": (
        lambda ms: _put(ms, "RA_ICRS", lambda r: np.full_like(r, r[0]), "DSA_MERIDIAN_CENTRES"),
        "RA does not follow LST",
    ),
    "missing subtable": (
        lambda ms: shutil.rmtree(ms / "SPECTRAL_WINDOW"),
        "casacore cannot read|structure",
    ),
}


def test_row_count_mismatch(broken):
    ms, exp = broken
    with pytest.raises(ConversionError, match="rows, expected"):
        validate_in_process(ms, dataclasses.replace(exp, n_rows=exp.n_rows + 36), FAST_CHECKS)


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_broken_ms_fails(broken, case):
    ms, exp = broken
    breakage, message = BREAKAGES[case]
    breakage(ms)
    with pytest.raises(ConversionError, match=message):
        validate_in_process(ms, exp, FAST_CHECKS)


def test_fields_mode_field_jump(small_group, tmp_path):
    from dsa_stream.conversion import convert_group

    out = tmp_path / "fields.ms"
    convert_group(small_group[0], out, fast_options(mode="fields"))
    exp = expectation(read_group(small_group[0]), fast_options(mode="fields"))
    for col in ("PHASE_DIR", "REFERENCE_DIR", "DELAY_DIR"):
        _put(
            out,
            col,
            lambda d: d + np.where(np.arange(len(d)) == 5, 2e-5, 0.0)[:, None, None],
            "FIELD",
        )
    with pytest.raises(ConversionError, match="phase centres|uvw"):
        validate_in_process(out, exp, FAST_CHECKS)


@pytest.mark.casa
def test_external_checks_pass_and_fail(broken, tmp_path):
    ms, exp = broken
    opts = ValidationOptions(casatools="require", casacore35="require")
    records = {r.name: r for r in validate_ms(ms, exp, opts)}
    assert records["casatools"].status == "ok" and "DSA_110" in records["casatools"].detail
    assert records["casacore 3.5"].status == "ok" and "3.5" in records["casacore 3.5"].detail
    for data_file in ms.glob("table.f*"):
        if data_file.stat().st_size > 100_000:
            data_file.write_bytes(b"\0" * 100)
    from dsa_stream.conversion.casacheck import check_casacore35, check_casatools

    with pytest.raises(ConversionError, match="casacore 3.5"):
        check_casacore35(ms, opts)
    with pytest.raises(ConversionError, match="casatools"):
        check_casatools(ms, opts)


def test_missing_legacy_interpreter_policy(broken, tmp_path):
    from dsa_stream.conversion.casacheck import check_casacore35

    ms, _ = broken
    missing = tmp_path / "no-python3"
    warn = ValidationOptions(casacore35="warn", legacy_python=missing)
    rec = check_casacore35(ms, warn)
    assert rec.status == "warning" and "does not exist" in rec.detail
    with pytest.raises(ConversionError, match="could not run.*does not exist"):
        check_casacore35(ms, ValidationOptions(casacore35="require", legacy_python=missing))
    fake = tmp_path / "python-without-casacore"
    fake.write_text('#!/bin/sh\necho \'{"missing": "No module named casacore"}\'\n')
    fake.chmod(0o755)
    rec = check_casacore35(ms, ValidationOptions(casacore35="warn", legacy_python=fake))
    assert rec.status == "warning" and "python3-casacore" in rec.detail
