"""Station layout of the simulated DSA-110 T array and the choice of active stations.

Layout (east, north, up in metres from the T junction, which is the array centre of
:mod:`dsa_stream.instrument`), from the published design:

* E-W arm, DSA-001..051: 5.75 m spacing centred on the junction, DSA-001 westmost
  (east = (station - 26) * 5.75 m, i.e. -143.75 .. +143.75 m);
* N-S arm, DSA-052..102: 8.653 m spacing running north from 7 m to 439.65 m;
* outriggers, DSA-103..117: radii evenly spaced from 537 to 2043 m, azimuths stepping
  by the golden angle (137.508 deg) from 35 deg east of north. These outrigger positions
  are **approximations** (plausible and fixed, not surveyed positions).

All stations lie in the local horizontal plane (up = 0). The layout is fixed: it does
not depend on the seed.

Active stations: ``antennas = 96`` is the real 2026 active set (every station except
:data:`dsa_stream.instrument.INACTIVE_STATIONS`: 47 E-W, 35 N-S, 14 outriggers). A
smaller number picks, deterministically and independently of the seed, a subset that
keeps the T shape: ``n_out = max(1 if A < 6 else 2, round(A * 14 / 96))`` outriggers,
``n_ns = max(1, round((A - n_out) * 35 / 82))`` N-S stations and the rest on the E-W
arm; within each part the stations at the centres of ``n`` equal slices of the part's
active stations (ordered by station number) are taken, so the arms stay fully spanned
and the outriggers spread in radius and azimuth.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from pyuvdata.utils.coordinates import ECEF_from_ENU, XYZ_from_LatLonAlt

from dsa_stream import instrument
from dsa_stream.exceptions import SimulationError

EW_STATIONS = tuple(range(1, 52))
NS_STATIONS = tuple(range(52, 103))
OUTRIGGER_STATIONS = tuple(range(103, 118))
EW_SPACING_M = 5.75
NS_SPACING_M = 8.653
NS_FIRST_M = 7.0
OUTRIGGER_MIN_M = 537.0
OUTRIGGER_MAX_M = 2043.0
_GOLDEN_ANGLE_DEG = 137.50776405003785
_OUTRIGGER_AZ0_DEG = 35.0


class ArrayLayout(NamedTuple):
    """Station positions and the active subset."""

    stations: NDArray[np.int64]
    """All station numbers, 1..117."""
    enu_m: NDArray[np.float64]
    """(117, 3) east/north/up of every station (m)."""
    rel_ecef_m: NDArray[np.float64]
    """(117, 3) ECEF position minus the array-centre ECEF position (m), pyuvdata's
    ``antenna_positions`` convention."""
    active: NDArray[np.int64]
    """Active station numbers, ascending."""


def station_enu() -> NDArray[np.float64]:
    """East, north, up (m) of the 117 stations, row ``k`` for station ``k + 1``."""
    enu = np.zeros((instrument.N_STATIONS, 3))
    for st in EW_STATIONS:
        enu[st - 1, 0] = (st - 26) * EW_SPACING_M
    for j, st in enumerate(NS_STATIONS):
        enu[st - 1, 1] = NS_FIRST_M + j * NS_SPACING_M
    n_out = len(OUTRIGGER_STATIONS)
    for k, st in enumerate(OUTRIGGER_STATIONS):
        radius = OUTRIGGER_MIN_M + (OUTRIGGER_MAX_M - OUTRIGGER_MIN_M) * k / (n_out - 1)
        az = math.radians((_OUTRIGGER_AZ0_DEG + k * _GOLDEN_ANGLE_DEG) % 360.0)
        enu[st - 1, 0] = radius * math.sin(az)
        enu[st - 1, 1] = radius * math.cos(az)
    return enu


def relative_ecef(enu_m: NDArray[np.float64]) -> NDArray[np.float64]:
    """ECEF positions relative to the array centre for local ENU positions."""
    lat, lon = math.radians(instrument.SITE_LAT_DEG), math.radians(instrument.SITE_LON_DEG)
    ecef = ECEF_from_ENU(enu_m, latitude=lat, longitude=lon, altitude=instrument.SITE_ALT_M)
    centre = XYZ_from_LatLonAlt(lat, lon, instrument.SITE_ALT_M)
    return np.asarray(ecef - centre, dtype=np.float64)


def _spread(candidates: list[int], n: int) -> list[int]:
    """``n`` elements at the centres of ``n`` equal slices of ``candidates``."""
    size = len(candidates)
    return [candidates[int((k + 0.5) * size / n)] for k in range(n)]


def active_stations(n_antennas: int) -> NDArray[np.int64]:
    """The active station numbers for ``n_antennas`` (see the module docstring for the rule).

    Raises:
        SimulationError: for fewer than 3 or more than 96 antennas.
    """
    inactive = set(instrument.INACTIVE_STATIONS)
    parts = [
        [s for s in stations if s not in inactive]
        for stations in (EW_STATIONS, NS_STATIONS, OUTRIGGER_STATIONS)
    ]
    n_real = sum(len(p) for p in parts)
    if not 3 <= n_antennas <= n_real:
        raise SimulationError(f"antennas must be 3..{n_real}, got {n_antennas}")
    ew, ns, out = parts
    n_out = min(len(out), max(1 if n_antennas < 6 else 2, round(n_antennas * len(out) / n_real)))
    n_ns = min(len(ns), max(1, round((n_antennas - n_out) * len(ns) / (len(ew) + len(ns)))))
    n_ew = n_antennas - n_out - n_ns
    chosen = _spread(ew, n_ew) + _spread(ns, n_ns) + _spread(out, n_out)
    return np.array(sorted(chosen), dtype=np.int64)


def build_layout(n_antennas: int) -> ArrayLayout:
    """Positions of all 117 stations and the active subset for ``n_antennas``."""
    enu = station_enu()
    return ArrayLayout(
        stations=np.arange(1, instrument.N_STATIONS + 1, dtype=np.int64),
        enu_m=enu,
        rel_ecef_m=relative_ecef(enu),
        active=active_stations(n_antennas),
    )
