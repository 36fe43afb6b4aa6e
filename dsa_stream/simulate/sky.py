"""The simulated sky: random point sources in a strip, explicit sources and a calibrator.

Random sources are drawn per 1 deg x 1 deg cell of (RA, Dec) with a generator seeded by
(seed, cell), uniformly in area inside the cell, with a Poisson number of mean
``density * cell area``, power-law differential counts dN/dS ~ S**index between
``flux_min_jy`` and ``flux_max_jy`` and Gaussian spectral indices. The sky of a seed is
therefore the same whatever part of it a night looks at; a night draws the cells that
overlap its strip (the pointing Dec +- ``strip_half_width_deg``, and the RA range swept
by the meridian plus the same half width on each side).
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict

from dsa_stream.calibration.catalog import Calibrator, FluxModel, PowerLawFlux
from dsa_stream.simulate.options import SkyOptions

logger = logging.getLogger(__name__)

#: Random-stream identifier of the sky draws.
SKY_STREAM = 1


class SkySource(BaseModel):
    """A point source of the simulated sky (ICRS position, flux model)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str
    """Unique name."""
    kind: Literal["random", "explicit", "calibrator"]
    """Where the source comes from."""
    ra_deg: float
    """ICRS right ascension (deg)."""
    dec_deg: float
    """ICRS declination (deg)."""
    flux: FluxModel
    """Flux-density model."""

    def flux_jy(self, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """Flux density (Jy) at the given frequencies (Hz)."""
        return self.flux.flux_jy_at(freq_hz)


def _draw_fluxes(rng: np.random.Generator, n: int, sky: SkyOptions) -> NDArray[np.float64]:
    """Fluxes from dN/dS ~ S**index on [flux_min, flux_max] by inverse transform."""
    u = rng.random(n)
    lo, hi, k = sky.flux_min_jy, sky.flux_max_jy, sky.flux_power_law_index + 1.0
    if abs(k) < 1e-12:
        return np.asarray(lo * (hi / lo) ** u)
    return np.asarray((lo**k + u * (hi**k - lo**k)) ** (1.0 / k))


def cell_sources(seed: int, sky: SkyOptions, ra_cell: int, dec_cell: int) -> list[SkySource]:
    """The random sources of one (RA, Dec) cell.

    The cell spans RA [ra_cell, ra_cell + 1) deg and Dec [dec_cell, dec_cell + 1) deg.
    """
    if sky.density_per_deg2 <= 0:
        return []
    rng = np.random.default_rng([seed, SKY_STREAM, ra_cell % 360, dec_cell + 90])
    s1, s2 = math.sin(math.radians(dec_cell)), math.sin(math.radians(dec_cell + 1))
    area_deg2 = math.radians(1.0) * (s2 - s1) * (180.0 / math.pi) ** 2
    n = int(rng.poisson(sky.density_per_deg2 * area_deg2))
    ra = (ra_cell % 360) + rng.random(n)
    dec = np.degrees(np.arcsin(s1 + rng.random(n) * (s2 - s1)))
    flux = _draw_fluxes(rng, n, sky)
    alpha = sky.spectral_index_mean + sky.spectral_index_std * rng.standard_normal(n)
    return [
        SkySource(
            name=f"sim-{ra_cell % 360:03d}{dec_cell:+03d}-{k}",
            kind="random",
            ra_deg=float(ra[k]),
            dec_deg=float(dec[k]),
            flux=PowerLawFlux(flux_jy=float(flux[k]), spectral_index=float(alpha[k])),
        )
        for k in range(n)
    ]


def strip_sources(
    seed: int,
    sky: SkyOptions,
    ra_start_deg: float,
    ra_span_deg: float,
    dec_min_deg: float,
    dec_max_deg: float,
) -> list[SkySource]:
    """Random sources of the strip swept by a night.

    Args:
        seed: Simulation seed.
        sky: Sky options (density, fluxes, strip half width).
        ra_start_deg: ICRS RA of the meridian at the start of the night (deg).
        ra_span_deg: RA swept by the meridian during the night (deg, >= 0).
        dec_min_deg: Lowest ICRS Dec of the pointing over the night (deg).
        dec_max_deg: Highest ICRS Dec of the pointing over the night (deg).

    Returns:
        Sources with Dec within the pointing +- half width and RA within the swept range
        widened on both sides by the half width / cos(Dec), ordered by cell.
    """
    hw = sky.strip_half_width_deg
    lo, hi = max(-90.0, dec_min_deg - hw), min(90.0, dec_max_deg + hw)
    cos_edge = math.cos(math.radians(max(abs(lo), abs(hi))))
    margin = 180.0 if cos_edge < 1e-6 else min(180.0, hw / cos_edge)
    width = ra_span_deg + 2.0 * margin
    first = ra_start_deg - margin
    if width >= 360.0:
        ra_cells = list(range(360))
    else:
        ra_cells = [c % 360 for c in range(math.floor(first), math.floor(first + width) + 1)]
    dec_cells = range(math.floor(lo), min(89, math.floor(hi)) + 1)
    out = []
    for rc in ra_cells:
        for dc in dec_cells:
            for src in cell_sources(seed, sky, rc, dc):
                in_ra = width >= 360.0 or (src.ra_deg - first) % 360.0 <= width
                if in_ra and lo <= src.dec_deg <= hi:
                    out.append(src)
    logger.debug("strip: %d random sources (Dec %.2f..%.2f)", len(out), lo, hi)
    return out


def explicit_sources(sky: SkyOptions) -> list[SkySource]:
    """The explicitly listed sources of the sky options."""
    return [
        SkySource(
            name=s.name,
            kind="explicit",
            ra_deg=s.ra_deg,
            dec_deg=s.dec_deg,
            flux=PowerLawFlux(flux_jy=s.flux_jy, spectral_index=s.spectral_index),
        )
        for s in sky.extra_sources
    ]


def calibrator_source(cal: Calibrator) -> SkySource:
    """A catalogue calibrator as a sky source (its bundled position and flux model)."""
    return SkySource(
        name=cal.name, kind="calibrator", ra_deg=cal.ra_deg, dec_deg=cal.dec_deg, flux=cal.flux
    )
