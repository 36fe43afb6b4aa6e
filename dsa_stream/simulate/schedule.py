"""When the simulated observations happen and where the meridian points.

Observation ``k`` starts at ``start + k * (24 * 12.884902 s + gap)``; its ``time_array``
holds the 24 integration centres (JD, UTC). The phase centre of integration ``i`` is
apparent (HA = 0, Dec = pointing), i.e. apparent RA = LST_i; its ICRS position comes
from :func:`pyuvdata.utils.phasing.transform_app_to_icrs`. All times derive from the
options; none from the wall clock.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import NamedTuple

import numpy as np
from astropy.time import Time
from numpy.typing import NDArray
from pyuvdata.utils.phasing import transform_app_to_icrs, transform_icrs_to_app
from pyuvdata.utils.times import get_lst_for_time

import dsa_stream.casa_env  # noqa: F401  (astropy offline before any time/coordinate work)
from dsa_stream import instrument, naming
from dsa_stream.simulate.options import SimulationOptions

#: Random-stream identifier of the file-name jitter.
JITTER_STREAM = 4
SECONDS_PER_DAY = 86400.0
#: Length of the sidereal day in solar days.
SIDEREAL_DAY = 0.99726956633
TELESCOPE_LOC = (
    math.radians(instrument.SITE_LAT_DEG),
    math.radians(instrument.SITE_LON_DEG),
    instrument.SITE_ALT_M,
)


class GroupTimes(NamedTuple):
    """Times and meridian phase centres of one observation."""

    index: int
    start_jd: float
    time_jd: NDArray[np.float64]
    """(24,) integration centres, JD (UTC)."""
    lst_rad: NDArray[np.float64]
    """(24,) apparent local sidereal times (rad) = apparent RA of the phase centres."""
    pc_ra_icrs_rad: NDArray[np.float64]
    """(24,) ICRS RA of the phase centres (rad)."""
    pc_dec_icrs_rad: NDArray[np.float64]
    """(24,) ICRS Dec of the phase centres (rad)."""
    mid_jd: float
    mid_icrs_rad: tuple[float, float]
    """ICRS (RA, Dec) of the apparent meridian position at the group midpoint (rad)."""
    jitter_s: tuple[int, ...]
    """File-name delay of each of the 16 subbands after the start (s)."""

    @property
    def end_jd(self) -> float:
        """End of the observation (JD)."""
        return self.start_jd + instrument.OBSERVATION_S / SECONDS_PER_DAY

    @property
    def key(self) -> str:
        """Group key: the observation start from the data, rounded to the second."""
        return naming.group_key(jd_to_datetime(self.start_jd))

    def filename(self, subband: int) -> str:
        """File name of one subband: start + jitter, truncated to whole seconds."""
        when = jd_to_datetime(self.start_jd) + dt.timedelta(seconds=self.jitter_s[subband])
        return naming.format_subband_filename(naming.SubbandName(when, subband))


def datetime_to_jd(when: dt.datetime) -> float:
    """JD (UTC) of an aware datetime."""
    return float(Time(when.astimezone(dt.UTC).replace(tzinfo=None), scale="utc").jd)


def jd_to_datetime(jd: float) -> dt.datetime:
    """Aware UTC datetime (microseconds) of a JD (UTC)."""
    return Time(jd, format="jd", scale="utc").to_datetime(timezone=dt.UTC)


def jd_to_iso(jd: float) -> str:
    """ISO 8601 UTC string (microseconds) of a JD."""
    return jd_to_datetime(jd).strftime("%Y-%m-%dT%H:%M:%S.%f")


def lst_rad(time_jd: NDArray[np.float64]) -> NDArray[np.float64]:
    """Apparent local sidereal time at the array centre (rad)."""
    return np.asarray(
        get_lst_for_time(
            np.asarray(time_jd, dtype=np.float64),
            latitude=instrument.SITE_LAT_DEG,
            longitude=instrument.SITE_LON_DEG,
            altitude=instrument.SITE_ALT_M,
        )
    )


def icrs_to_apparent(
    time_jd: NDArray[np.float64], ra_rad: NDArray[np.float64], dec_rad: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Apparent (RA, Dec) at the site for ICRS positions, elementwise (rad)."""
    ra, dec = transform_icrs_to_app(
        time_array=np.asarray(time_jd, dtype=np.float64),
        ra=np.asarray(ra_rad, dtype=np.float64),
        dec=np.asarray(dec_rad, dtype=np.float64),
        telescope_loc=TELESCOPE_LOC,
    )
    return np.asarray(ra), np.asarray(dec)


def apparent_to_icrs(
    time_jd: NDArray[np.float64], ra_rad: NDArray[np.float64], dec_rad: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ICRS (RA, Dec) of apparent positions at the site, elementwise (rad)."""
    ra, dec = transform_app_to_icrs(
        time_array=np.asarray(time_jd, dtype=np.float64),
        app_ra=np.asarray(ra_rad, dtype=np.float64),
        app_dec=np.asarray(dec_rad, dtype=np.float64),
        telescope_loc=TELESCOPE_LOC,
    )
    return np.asarray(ra), np.asarray(dec)


def _wrap_pi(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def hour_angle_rad(jd: float, ra_deg: float, dec_deg: float) -> float:
    """Apparent hour angle of an ICRS position at the site, wrapped to [-pi, pi)."""
    t = np.array([jd])
    app_ra, _ = icrs_to_apparent(t, np.radians([ra_deg]), np.radians([dec_deg]))
    return _wrap_pi(float(lst_rad(t)[0] - app_ra[0]))


def transit_jd(ra_deg: float, dec_deg: float, near_jd: float, after: bool = False) -> float:
    """Upper meridian transit of an ICRS position (JD, UTC), to better than a millisecond.

    Args:
        ra_deg: ICRS RA (deg).
        dec_deg: ICRS Dec (deg).
        near_jd: Start of the search.
        after: True: the first transit at or after ``near_jd``; False: the nearest one.
    """
    ha = hour_angle_rad(near_jd, ra_deg, dec_deg)
    step = -ha if not after or ha <= 0 else 2.0 * math.pi - ha
    jd = near_jd + step / (2.0 * math.pi) * SIDEREAL_DAY
    for _ in range(3):
        jd -= hour_angle_rad(jd, ra_deg, dec_deg) / (2.0 * math.pi) * SIDEREAL_DAY
    return jd


def apparent_dec_deg(jd: float, ra_deg: float, dec_deg: float) -> float:
    """Apparent Dec (deg) of an ICRS position at a time."""
    _, dec = icrs_to_apparent(np.array([jd]), np.radians([ra_deg]), np.radians([dec_deg]))
    return math.degrees(float(dec[0]))


def group_start_jd(first_start_jd: float, index: int, gap_minutes: float) -> float:
    """Start (JD) of observation ``index``."""
    step_s = instrument.OBSERVATION_S + 60.0 * gap_minutes
    return first_start_jd + index * step_s / SECONDS_PER_DAY


def group_times(
    opts: SimulationOptions, first_start_jd: float, index: int, dec_app_rad: float
) -> GroupTimes:
    """Times, LSTs, ICRS phase centres and file-name jitter of one observation."""
    start = group_start_jd(first_start_jd, index, opts.gap_minutes)
    offsets = (np.arange(instrument.N_INTEGRATIONS) + 0.5) * instrument.INTEGRATION_S
    time_jd = start + offsets / SECONDS_PER_DAY
    lst = lst_rad(time_jd)
    dec = np.full_like(lst, dec_app_rad)
    pc_ra, pc_dec = apparent_to_icrs(time_jd, lst, dec)
    mid = start + 0.5 * instrument.OBSERVATION_S / SECONDS_PER_DAY
    mid_ra, mid_dec = apparent_to_icrs(np.array([mid]), lst_rad(np.array([mid])), dec[:1])
    rng = np.random.default_rng([opts.seed, JITTER_STREAM, index])
    jitter = rng.integers(0, opts.jitter_max_s + 1, size=instrument.N_SUBBANDS)
    return GroupTimes(
        index=index,
        start_jd=start,
        time_jd=time_jd,
        lst_rad=lst,
        pc_ra_icrs_rad=pc_ra,
        pc_dec_icrs_rad=pc_dec,
        mid_jd=mid,
        mid_icrs_rad=(float(mid_ra[0]), float(mid_dec[0])),
        jitter_s=tuple(int(j) for j in jitter),
    )
