"""Automatic choice of the reference antenna: least flagged, then closest to the array centre.

Antennas with data are ranked first by their flagged fraction, in steps of a
``tier`` (default 2%, so that a handful of flagged samples does not beat a central
antenna), then by the distance of their pad from the median position of the active
antennas (central antennas have baselines to everyone, the outriggers do not), then by
name (deterministic). The first is the reference antenna; the next ones are handed to
CASA as its fallback list (CASA moves along the list when the first has no solution).
An explicit list from the options always wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from dsa_stream.exceptions import CalibrationError

#: Fallback antennas passed to CASA after the preferred one.
N_FALLBACK = 4


def rank_antennas(
    flagged: Mapping[str, float],
    positions: Mapping[str, NDArray[np.float64]],
    *,
    tier: float = 0.02,
    max_flagged: float = 0.5,
) -> list[str]:
    """Antenna names, best reference first (see the module docstring).

    Args:
        flagged: Flagged fraction of each antenna's cross-correlations.
        positions: Position (ITRF or local, metres) of each antenna.
        tier: Flagged fractions are compared in steps of this size.
        max_flagged: Antennas flagged more than this are never references.

    Raises:
        CalibrationError: if no antenna qualifies.
    """
    names = [n for n, f in flagged.items() if f <= max_flagged and n in positions]
    if not names:
        raise CalibrationError(
            f"no reference antenna: every antenna has more than {max_flagged:.0%} flagged"
        )
    centre = np.median(np.array([positions[n] for n in names]), axis=0)

    def key(name: str) -> tuple[int, float, str]:
        level = math.floor(round(flagged[name] / tier, 9)) if tier > 0 else 0
        return level, float(np.linalg.norm(positions[name] - centre)), name

    return sorted(names, key=key)


def choose_refant(
    flagged: Mapping[str, float],
    positions: Mapping[str, NDArray[np.float64]],
    preferred: Sequence[str] = (),
) -> list[str]:
    """The reference antenna list handed to CASA: explicit ``preferred``, else ranked.

    Explicit antennas must have data; the ranked list is truncated to the preferred
    antenna plus :data:`N_FALLBACK` fallbacks.
    """
    if preferred:
        missing = [n for n in preferred if n not in flagged]
        if missing:
            raise CalibrationError(f"reference antenna(s) {missing} have no data in this group")
        return list(preferred)
    return rank_antennas(flagged, positions)[: 1 + N_FALLBACK]
