"""Checks of a written Measurement Set; every failure is a :class:`ConversionError`.

In-process checks read the MS with python-casacore:

* structure: rows, DATA shape, TELESCOPE_NAME ``DSA_110``;
* frequencies: one SPW, ascending, contiguous (steps = CHAN_WIDTH), widths > 0, equal
  to the expected band;
* times: the distinct TIME values are the input integration centres, INTERVAL is the
  integration time, OBSERVATION TIME_RANGE spans the first to the last integration;
* UVW: |UVW| equals the baseline length from the ANTENNA positions for every row, and
  UVW equals the uvw recomputed from the ANTENNA positions, TIME and the row's FIELD
  direction (so w follows the phase centre), both within ``uvw_tolerance_m``;
* phase centres: the meridian centres (subtable ``DSA_MERIDIAN_CENTRES``, and FIELD
  in mode ``fields``) sit at apparent (LST, Dec) and drift as the sky does: consecutive
  separations equal 15.041 deg/h x dt x cos(Dec) (so no false failure at high Dec);
  in mode ``midpoint`` the one FIELD is apparent (LST(t_mid), Dec).

Child-process checks open the MS with casatools and with Debian's casacore 3.5
(see :mod:`dsa_stream.conversion.casacheck`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation
from casacore import tables
from numpy.typing import NDArray
from pyuvdata.utils.phasing import calc_frame_pos_angle, calc_uvw, transform_icrs_to_app
from pyuvdata.utils.times import get_lst_for_time

from dsa_stream import instrument
from dsa_stream.conversion.msio import CENTRES_TABLE, DEC_KEYWORD, MODE_KEYWORD
from dsa_stream.conversion.options import CheckRecord, ValidationOptions
from dsa_stream.exceptions import ConversionError

logger = logging.getLogger(__name__)

#: Sidereal rate of the meridian in RA (deg per hour of UTC).
SIDEREAL_DEG_PER_HOUR = 360.98564736629 / 24.0
_ARCSEC = math.pi / 180.0 / 3600.0


@dataclass(frozen=True)
class Expectation:
    """What the MS must contain, known from the inputs and options."""

    times_mjd: NDArray[np.float64]
    """Distinct integration centres (MJD, UTC)."""
    integration_s: float
    n_rows: int
    freqs_hz: NDArray[np.float64]
    """Expected ascending channel centres."""
    dec0_rad: float
    mode: str
    n_pols: int


def _fail(check: str, message: str) -> ConversionError:
    return ConversionError(f"MS check '{check}' failed: {message}")


def _site(ms: Path) -> tuple[NDArray[np.float64], EarthLocation]:
    """Array-centre ITRF position (m) and location."""
    with tables.table(f"{ms}/OBSERVATION", ack=False) as tb:
        if "TELESCOPE_LOCATION" in tb.colnames():
            xyz = np.asarray(tb.getcell("TELESCOPE_LOCATION", 0), dtype=np.float64)
        else:
            loc0 = EarthLocation.from_geodetic(
                instrument.SITE_LON_DEG, instrument.SITE_LAT_DEG, instrument.SITE_ALT_M
            )
            xyz = np.array([loc0.x.to_value(u.m), loc0.y.to_value(u.m), loc0.z.to_value(u.m)])
    return xyz, EarthLocation.from_geocentric(*xyz, unit=u.m)


def check_structure(ms: Path, exp: Expectation) -> CheckRecord:
    """Rows, DATA shape and telescope name."""
    with tables.table(str(ms), ack=False) as tb:
        n = tb.nrows()
        cols = set(tb.colnames())
        for col in ("DATA", "FLAG", "UVW", "TIME", "ANTENNA1", "ANTENNA2", "WEIGHT", "SIGMA"):
            if col not in cols:
                raise _fail("structure", f"column {col} is missing")
        if n != exp.n_rows:
            raise _fail("structure", f"{n} rows, expected {exp.n_rows}")
        shape = tuple(tb.getcell("DATA", 0).shape)
    if shape != (exp.freqs_hz.size, exp.n_pols):
        raise _fail(
            "structure", f"DATA cells are {shape}, expected {(exp.freqs_hz.size, exp.n_pols)}"
        )
    with tables.table(f"{ms}/OBSERVATION", ack=False) as tb:
        name = str(tb.getcell("TELESCOPE_NAME", 0))
    if name != instrument.TELESCOPE_NAME:
        raise _fail(
            "structure", f"TELESCOPE_NAME is {name!r}, expected {instrument.TELESCOPE_NAME!r}"
        )
    return CheckRecord(name="structure", status="ok", detail=f"{n} rows, DATA {shape}")


def check_frequencies(ms: Path, exp: Expectation) -> CheckRecord:
    """One SPW, ascending, contiguous, positive widths, the expected band."""
    with tables.table(f"{ms}/SPECTRAL_WINDOW", ack=False) as tb:
        if tb.nrows() != 1:
            raise _fail("frequency order", f"{tb.nrows()} spectral windows, expected 1")
        freqs = np.asarray(tb.getcell("CHAN_FREQ", 0), dtype=np.float64)
        widths = np.asarray(tb.getcell("CHAN_WIDTH", 0), dtype=np.float64)
    if np.any(widths <= 0):
        raise _fail("frequency order", "CHAN_WIDTH is not positive everywhere")
    if freqs.size > 1:
        steps = np.diff(freqs)
        if np.any(steps <= 0):
            raise _fail("frequency order", "channel frequencies are not ascending")
        if not np.allclose(steps, widths[:-1], rtol=1e-6):
            raise _fail("frequency order", "channels are not contiguous (steps != CHAN_WIDTH)")
    if freqs.size != exp.freqs_hz.size or not np.allclose(freqs, exp.freqs_hz, atol=1.0, rtol=0):
        raise _fail(
            "frequency order",
            f"{freqs.size} channels {freqs.min() / 1e6:.3f}-{freqs.max() / 1e6:.3f} MHz, "
            f"expected {exp.freqs_hz.size} channels "
            f"{exp.freqs_hz.min() / 1e6:.3f}-{exp.freqs_hz.max() / 1e6:.3f} MHz",
        )
    return CheckRecord(
        name="frequency order",
        status="ok",
        detail=f"{freqs.size} ascending channels of {widths[0]:.1f} Hz",
    )


def check_times(ms: Path, exp: Expectation) -> CheckRecord:
    """TIME values, INTERVAL and the OBSERVATION time range."""
    with tables.table(str(ms), ack=False) as tb:
        t = tb.getcol("TIME")
        interval = tb.getcol("INTERVAL")
    ut = np.unique(t)
    want = exp.times_mjd * 86400.0
    if ut.size != want.size or np.max(np.abs(ut - want)) > 1e-3:
        raise _fail(
            "time range",
            f"{ut.size} integrations {ut.min() / 86400:.6f}-{ut.max() / 86400:.6f} MJD, the "
            f"inputs have {want.size} ({want.min() / 86400:.6f}-{want.max() / 86400:.6f} MJD)",
        )
    if np.max(np.abs(interval - exp.integration_s)) > 1e-3:
        raise _fail("time range", f"INTERVAL is not the integration time {exp.integration_s} s")
    with tables.table(f"{ms}/OBSERVATION", ack=False) as tb:
        tr = np.asarray(tb.getcell("TIME_RANGE", 0))
    half = exp.integration_s / 2
    if abs(tr[0] - (want[0] - half)) > 1e-3 or abs(tr[1] - (want[-1] + half)) > 1e-3:
        raise _fail("time range", f"OBSERVATION TIME_RANGE {tr.tolist()} does not span the data")
    return CheckRecord(name="time range", status="ok", detail=f"{ut.size} integrations")


def _field_dirs(ms: Path) -> tuple[NDArray[np.float64], list[str]]:
    """(nfield, 2) PHASE_DIR (rad) and field names; REFERENCE/DELAY_DIR must agree."""
    with tables.table(f"{ms}/FIELD", ack=False) as tb:
        dirs = {
            c: np.asarray(tb.getcol(c))[:, 0, :]
            for c in ("PHASE_DIR", "REFERENCE_DIR", "DELAY_DIR")
        }
        names = [str(n) for n in tb.getcol("NAME")]
    for col in ("REFERENCE_DIR", "DELAY_DIR"):
        if not np.allclose(dirs[col], dirs["PHASE_DIR"], atol=1e-10):
            raise _fail("phase centres", f"FIELD {col} differs from PHASE_DIR")
    return dirs["PHASE_DIR"], names


def check_uvw(ms: Path, tolerance_m: float) -> CheckRecord:
    """|UVW| = baseline length, and UVW = uvw recomputed for the row's field and time."""
    with tables.table(f"{ms}/ANTENNA", ack=False) as tb:
        pos = np.asarray(tb.getcol("POSITION"), dtype=np.float64)
    with tables.table(str(ms), ack=False) as tb:
        uvw = tb.getcol("UVW")
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        t = tb.getcol("TIME")
        fid = tb.getcol("FIELD_ID")
    blen = np.linalg.norm(pos[a2] - pos[a1], axis=1)
    ulen = np.linalg.norm(uvw, axis=1)
    bad = np.abs(ulen - blen) > tolerance_m
    if np.any(bad):
        r = int(np.flatnonzero(bad)[0])
        raise _fail(
            "uvw",
            f"{int(bad.sum())} row(s) have |UVW| != baseline length, e.g. row {r}: "
            f"|UVW| {ulen[r]:.4f} m vs {blen[r]:.4f} m (antennas {a1[r]}-{a2[r]})",
        )
    cross = a1 != a2
    if cross.any() and np.all(ulen[cross] == 0):
        raise _fail("uvw", "all cross-correlation UVW are zero")
    xyz, site = _site(ms)
    dirs, _ = _field_dirs(ms)
    jd = t / 86400.0 + 2400000.5
    ut, inv = np.unique(np.column_stack([jd, fid]), axis=0, return_inverse=True)
    inv = inv.ravel()
    f_u = ut[:, 1].astype(int)
    app_ra, app_dec = transform_icrs_to_app(
        time_array=ut[:, 0], ra=dirs[f_u, 0], dec=dirs[f_u, 1], telescope_loc=site
    )
    pa = calc_frame_pos_angle(
        time_array=ut[:, 0],
        app_ra=app_ra,
        app_dec=app_dec,
        telescope_loc=site,
        ref_frame="icrs",
        ref_epoch=2000.0,
    )
    lst = get_lst_for_time(ut[:, 0], telescope_loc=site)
    nant = pos.shape[0]
    expected = calc_uvw(
        app_ra=app_ra[inv],
        app_dec=app_dec[inv],
        frame_pa=pa[inv],
        lst_array=lst[inv],
        use_ant_pos=True,
        antenna_positions=pos - xyz[None, :],
        antenna_numbers=np.arange(nant),
        ant_1_array=a1,
        ant_2_array=a2,
        telescope_lat=site.lat.rad,
        telescope_lon=site.lon.rad,
    )
    # The MS stores UVW = -uvw (pyuvdata flip_conj convention).
    diff = np.abs(-expected - uvw).max(axis=1)
    if np.any(diff > tolerance_m):
        r = int(np.argmax(diff))
        raise _fail(
            "uvw",
            f"{int((diff > tolerance_m).sum())} row(s) disagree with the UVW of their field "
            f"direction and time by up to {diff[r]:.4f} m (row {r}, w {uvw[r, 2]:.3f} m vs "
            f"{-expected[r, 2]:.3f} m): UVW and phase centre are inconsistent",
        )
    return CheckRecord(
        name="uvw", status="ok", detail=f"max |UVW| error {float(diff.max()) * 1e3:.3f} mm"
    )


def check_meridian_coherence(
    times_mjd: NDArray[np.float64],
    ra_rad: NDArray[np.float64],
    dec_rad: NDArray[np.float64],
    dec0_rad: float,
    site: EarthLocation,
    tolerance_arcsec: float = 1.0,
    rate_tolerance: float = 0.02,
    what: str = "meridian centres",
) -> str:
    """Check that ICRS centres follow the meridian: apparent (LST_i, dec0), sky-rate drift.

    Each centre, transformed to apparent coordinates at its time, must sit at hour
    angle 0 (RA = LST) and Dec ``dec0`` within ``tolerance_arcsec``; consecutive
    centres must be separated by 15.041 deg/h x dt x cos(dec0) within
    ``rate_tolerance`` (relative) plus ``tolerance_arcsec``: meridian drift is
    expected, a jump in Dec or an RA that does not follow LST is not.

    Returns:
        A one-line summary.

    Raises:
        ConversionError: naming the first offending centre.
    """
    jd = np.asarray(times_mjd, dtype=np.float64) + 2400000.5
    app_ra, app_dec = transform_icrs_to_app(
        time_array=jd, ra=np.asarray(ra_rad), dec=np.asarray(dec_rad), telescope_loc=site
    )
    lst = np.asarray(get_lst_for_time(jd, telescope_loc=site))
    ha = (lst - np.asarray(app_ra) + math.pi) % (2 * math.pi) - math.pi
    ha_err = np.abs(ha) * math.cos(dec0_rad) / _ARCSEC
    dec_err = np.abs(np.asarray(app_dec) - dec0_rad) / _ARCSEC
    k = int(np.argmax(np.maximum(ha_err, dec_err)))
    if ha_err[k] > tolerance_arcsec or dec_err[k] > tolerance_arcsec:
        raise _fail(
            "phase centres",
            f"{what} {k} (MJD {times_mjd[k]:.6f}) is {ha_err[k]:.1f} arcsec off the meridian "
            f"in RA (RA does not follow LST) and {dec_err[k]:.1f} arcsec off the pointing Dec "
            f"{math.degrees(dec0_rad):.4f} deg",
        )
    if jd.size > 1:
        dt_h = np.diff(times_mjd) * 24.0
        expected = SIDEREAL_DEG_PER_HOUR * dt_h * math.cos(dec0_rad) * 3600.0
        sep = _separation(ra_rad, dec_rad) / _ARCSEC
        bad = np.abs(sep - expected) > rate_tolerance * expected + tolerance_arcsec
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise _fail(
                "phase centres",
                f"{what} {i} -> {i + 1} are {sep[i]:.1f} arcsec apart, meridian drift at "
                f"Dec {math.degrees(dec0_rad):.2f} deg gives {expected[i]:.1f} arcsec",
            )
    return f"{jd.size} {what} on the meridian (max {float(np.max(ha_err)):.3f} arcsec)"


def _separation(ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[np.float64]:
    """Great-circle separation of consecutive positions (rad, Vincenty)."""
    ra, dec = np.asarray(ra), np.asarray(dec)
    d_ra = np.diff(ra)
    s1, c1 = np.sin(dec[:-1]), np.cos(dec[:-1])
    s2, c2 = np.sin(dec[1:]), np.cos(dec[1:])
    num = np.hypot(c2 * np.sin(d_ra), c1 * s2 - s1 * c2 * np.cos(d_ra))
    return np.arctan2(num, s1 * s2 + c1 * c2 * np.cos(d_ra))


def check_phase_centres(ms: Path, exp: Expectation, opts: ValidationOptions) -> CheckRecord:
    """Meridian centres, FIELD rows and the mode's single centre are coherent."""
    _, site = _site(ms)
    with tables.table(str(ms), ack=False) as tb:
        kw = tb.getkeywords()
        fid = tb.getcol("FIELD_ID")
        t = tb.getcol("TIME")
    mode = kw.get(MODE_KEYWORD)
    if mode != exp.mode:
        raise _fail("phase centres", f"the MS says mode {mode!r}, expected {exp.mode!r}")
    if CENTRES_TABLE not in kw:
        raise _fail("phase centres", f"subtable {CENTRES_TABLE} is missing")
    dec0 = float(kw.get(DEC_KEYWORD, exp.dec0_rad))
    if abs(dec0 - exp.dec0_rad) > 1e-9:
        raise _fail("phase centres", "the recorded pointing Dec differs from the inputs")
    with tables.table(f"{ms}/{CENTRES_TABLE}", ack=False) as tb:
        c_t = tb.getcol("TIME") / 86400.0
        c_ra, c_dec = tb.getcol("RA_ICRS"), tb.getcol("DEC_ICRS")
    if c_t.size != exp.times_mjd.size or np.max(np.abs(c_t - exp.times_mjd)) * 86400 > 1e-3:
        raise _fail("phase centres", f"{CENTRES_TABLE} does not list one centre per integration")
    kwargs = {
        "tolerance_arcsec": opts.centre_tolerance_arcsec,
        "rate_tolerance": opts.drift_rate_tolerance,
    }
    detail = check_meridian_coherence(c_t, c_ra, c_dec, dec0, site, **kwargs)
    dirs, _names = _field_dirs(ms)
    if mode == "fields":
        if dirs.shape[0] != c_t.size:
            raise _fail("phase centres", f"{dirs.shape[0]} fields for {c_t.size} integrations")
        order = np.searchsorted(np.unique(t), t)
        if not np.array_equal(fid, order):
            raise _fail("phase centres", "FIELD_ID does not select the field of each integration")
        check_meridian_coherence(
            c_t, dirs[:, 0], dirs[:, 1], dec0, site, what="FIELD centres", **kwargs
        )
        sep = np.hypot((dirs[:, 0] - c_ra) * np.cos(c_dec), dirs[:, 1] - c_dec) / _ARCSEC
        if np.max(sep) > 0.01:
            raise _fail("phase centres", "FIELD directions differ from the meridian centres")
    else:
        if dirs.shape[0] != 1 or np.any(fid != 0):
            raise _fail(
                "phase centres", f"mode {mode} needs exactly one field, found {dirs.shape[0]}"
            )
        if mode == "midpoint":
            mid = np.array([0.5 * (c_t[0] + c_t[-1])])
            check_meridian_coherence(
                mid, dirs[:1, 0], dirs[:1, 1], dec0, site, what="midpoint FIELD", **kwargs
            )
    return CheckRecord(name="phase centres", status="ok", detail=detail)


def validate_in_process(ms: Path, exp: Expectation, opts: ValidationOptions) -> list[CheckRecord]:
    """All python-casacore checks, in order; raises on the first failure."""
    if not (ms / "table.dat").exists():
        raise _fail("structure", f"{ms} is not a casacore table")
    try:
        return [
            check_structure(ms, exp),
            check_frequencies(ms, exp),
            check_times(ms, exp),
            check_uvw(ms, opts.uvw_tolerance_m),
            check_phase_centres(ms, exp, opts),
        ]
    except RuntimeError as exc:  # casacore errors (missing subtable, bad column)
        raise _fail("structure", f"casacore cannot read {ms}: {exc}") from exc


def validate_ms(ms: Path, exp: Expectation, opts: ValidationOptions) -> list[CheckRecord]:
    """In-process checks, then the casatools and casacore 3.5 checks per ``opts``."""
    from dsa_stream.conversion.casacheck import check_casacore35, check_casatools

    records = validate_in_process(ms, exp, opts)
    records.append(check_casatools(ms, opts))
    records.append(check_casacore35(ms, opts))
    logger.info("%s: %d checks passed", ms, sum(r.status == "ok" for r in records))
    return records
