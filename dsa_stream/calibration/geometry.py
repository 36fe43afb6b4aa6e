"""Sky geometry at the DSA-110 site: LST, apparent <-> ICRS, meridian transits, separations.

All times are UTC; astropy and pyuvdata run offline (:mod:`dsa_stream.casa_env`
switches IERS downloads off). A meridian transit is the instant the source's apparent
hour angle ``LST - RA_apparent`` is zero; apparent coordinates come from pyuvdata
(``transform_icrs_to_app``: precession, nutation, aberration). The dishes point at the
apparent meridian (HA = 0, Dec = pointing Dec), so the distance of a source from the
pointing centre at transit is ``|Dec_apparent(source) - Dec_pointing|``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyuvdata.utils.phasing import transform_app_to_icrs, transform_icrs_to_app
from pyuvdata.utils.times import get_lst_for_time

import dsa_stream.casa_env  # noqa: F401  (astropy offline before any time/coordinate work)
from dsa_stream import instrument

#: Offset of MJD from JD.
MJD_OFFSET = 2400000.5
SECONDS_PER_DAY = 86400.0
#: Length of the sidereal day in solar days.
SIDEREAL_DAY = 0.99726956633
TELESCOPE_LOC = (
    math.radians(instrument.SITE_LAT_DEG),
    math.radians(instrument.SITE_LON_DEG),
    instrument.SITE_ALT_M,
)


def lst_rad(mjd: ArrayLike) -> NDArray[np.float64]:
    """Apparent local sidereal time at the array centre (rad) at UTC MJDs."""
    jd = np.atleast_1d(np.asarray(mjd, dtype=np.float64)) + MJD_OFFSET
    return np.asarray(
        get_lst_for_time(
            jd,
            latitude=instrument.SITE_LAT_DEG,
            longitude=instrument.SITE_LON_DEG,
            altitude=instrument.SITE_ALT_M,
        ),
        dtype=np.float64,
    )


def icrs_to_apparent(
    mjd: ArrayLike, ra_rad: ArrayLike, dec_rad: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Apparent (RA, Dec) at the site of ICRS positions, elementwise (rad)."""
    jd = np.atleast_1d(np.asarray(mjd, dtype=np.float64)) + MJD_OFFSET
    ra = np.broadcast_to(np.asarray(ra_rad, dtype=np.float64), jd.shape)
    dec = np.broadcast_to(np.asarray(dec_rad, dtype=np.float64), jd.shape)
    app_ra, app_dec = transform_icrs_to_app(
        time_array=jd, ra=np.array(ra), dec=np.array(dec), telescope_loc=TELESCOPE_LOC
    )
    return np.asarray(app_ra, dtype=np.float64), np.asarray(app_dec, dtype=np.float64)


def apparent_to_icrs(
    mjd: ArrayLike, ra_rad: ArrayLike, dec_rad: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ICRS (RA, Dec) of apparent positions at the site, elementwise (rad)."""
    jd = np.atleast_1d(np.asarray(mjd, dtype=np.float64)) + MJD_OFFSET
    ra = np.broadcast_to(np.asarray(ra_rad, dtype=np.float64), jd.shape)
    dec = np.broadcast_to(np.asarray(dec_rad, dtype=np.float64), jd.shape)
    icrs_ra, icrs_dec = transform_app_to_icrs(
        time_array=jd, app_ra=np.array(ra), app_dec=np.array(dec), telescope_loc=TELESCOPE_LOC
    )
    return np.asarray(icrs_ra, dtype=np.float64), np.asarray(icrs_dec, dtype=np.float64)


def meridian_centres_icrs(
    mjd: ArrayLike, dec_app_rad: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ICRS (RA, Dec) (rad) of apparent (HA = 0, ``dec_app_rad``) at each time."""
    times = np.atleast_1d(np.asarray(mjd, dtype=np.float64))
    return apparent_to_icrs(times, lst_rad(times), np.full(times.shape, dec_app_rad))


def _wrap_pi(angle: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray((angle + math.pi) % (2.0 * math.pi) - math.pi)


def hour_angle_rad(mjd: ArrayLike, ra_deg: float, dec_deg: float) -> NDArray[np.float64]:
    """Apparent hour angle of an ICRS position, wrapped to [-pi, pi) (rad)."""
    times = np.atleast_1d(np.asarray(mjd, dtype=np.float64))
    app_ra, _ = icrs_to_apparent(times, math.radians(ra_deg), math.radians(dec_deg))
    return _wrap_pi(lst_rad(times) - app_ra)


def transit_mjd(ra_deg: float, dec_deg: float, near_mjd: float) -> float:
    """The upper meridian transit of an ICRS position nearest to ``near_mjd`` (UTC MJD).

    Newton steps on the hour angle (three refinements: better than a millisecond).
    """
    mjd = (
        near_mjd
        - float(hour_angle_rad(near_mjd, ra_deg, dec_deg)[0]) / (2.0 * math.pi) * SIDEREAL_DAY
    )
    for _ in range(3):
        mjd -= float(hour_angle_rad(mjd, ra_deg, dec_deg)[0]) / (2.0 * math.pi) * SIDEREAL_DAY
    return mjd


def separation_rad(
    ra1_rad: ArrayLike, dec1_rad: ArrayLike, ra2_rad: ArrayLike, dec2_rad: ArrayLike
) -> NDArray[np.float64]:
    """Great-circle distances (rad), elementwise with broadcasting (haversine)."""
    ra1, dec1 = np.asarray(ra1_rad, dtype=np.float64), np.asarray(dec1_rad, dtype=np.float64)
    ra2, dec2 = np.asarray(ra2_rad, dtype=np.float64), np.asarray(dec2_rad, dtype=np.float64)
    h = (
        np.sin((dec2 - dec1) / 2.0) ** 2
        + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2.0) ** 2
    )
    return np.asarray(2.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))), dtype=np.float64)
