"""The common celestial grid of a mosaic, safe across RA 0/360.

The grid is 2D (RA, Dec; degenerate frequency/Stokes axes are never carried, so they
cannot inflate the bounding box). Its reference is the direction of the mean unit
vector of the tile centres (a circular mean, so tiles at RA 359 and 1 centre at 0, not
180), and its extent is the bounding box of every tile's edge, transformed into the
mosaic projection, plus one pixel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from dsa_stream.exceptions import MosaicError
from dsa_stream.mosaic.options import CoaddOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grid:
    """A 2D celestial pixel grid."""

    wcs: WCS
    shape: tuple[int, int]
    """(ny, nx)."""


def edge_samples(shape: tuple[int, int], n: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y) of ``n`` points per edge of an image's outer boundary."""
    ny, nx = shape
    xs = np.linspace(-0.5, nx - 0.5, n)
    ys = np.linspace(-0.5, ny - 0.5, n)
    x = np.concatenate([xs, xs, np.full(n, -0.5), np.full(n, nx - 0.5)])
    y = np.concatenate([np.full(n, -0.5), np.full(n, ny - 0.5), ys, ys])
    return x, y


def mean_direction(ra_deg: np.ndarray, dec_deg: np.ndarray) -> tuple[float, float]:
    """Direction (RA in [0, 360), Dec) of the mean unit vector of the given directions."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    v = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]).mean(axis=1)
    norm = float(np.linalg.norm(v))
    if norm < 1e-9:
        raise MosaicError("tile centres are spread over the whole sky; no mosaic centre")
    lon = float(np.degrees(np.arctan2(v[1], v[0]))) % 360.0
    lat = float(np.degrees(np.arcsin(np.clip(v[2] / norm, -1.0, 1.0))))
    return lon, lat


def _tile_centre(wcs: WCS, shape: tuple[int, int]) -> tuple[float, float]:
    ny, nx = shape
    lon, lat = wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    return float(lon), float(lat)


def make_wcs(centre: tuple[float, float], cell_deg: float, projection: str) -> WCS:
    """A north-up 2D ICRS WCS centred (CRPIX 1, 1) on ``centre``."""
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    w.wcs.crval = [centre[0] % 360.0, centre[1]]
    w.wcs.crpix = [1.0, 1.0]
    w.wcs.cdelt = [-cell_deg, cell_deg]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.set()
    return w


def plan_grid(tiles: Sequence[tuple[WCS, tuple[int, int]]], options: CoaddOptions) -> Grid:
    """The mosaic grid covering every tile.

    Args:
        tiles: (2D celestial WCS, (ny, nx)) of each tile.
        options: Pixel size, projection and the size limit.

    Raises:
        MosaicError: when there is no tile, a tile edge cannot be projected, or the
            grid would exceed ``options.max_pixels``.
    """
    if not tiles:
        raise MosaicError("no tiles to mosaic")
    centres = np.array([_tile_centre(w, s) for w, s in tiles])
    centre = mean_direction(centres[:, 0], centres[:, 1])
    if options.cell_arcsec is not None:
        cell = options.cell_arcsec / 3600.0
    else:
        cell = float(min(proj_plane_pixel_scales(w).min() for w, _ in tiles))
    wcs = make_wcs(centre, cell, options.projection)
    px, py = [], []
    for w, shape in tiles:
        lon, lat = w.pixel_to_world_values(*edge_samples(shape))
        x, y = wcs.world_to_pixel_values(lon, lat)
        px.append(x)
        py.append(y)
    x_all, y_all = np.concatenate(px), np.concatenate(py)
    if not (np.all(np.isfinite(x_all)) and np.all(np.isfinite(y_all))):
        raise MosaicError(f"a tile edge is not representable in the {options.projection} grid")
    x0, x1 = int(np.floor(x_all.min())), int(np.ceil(x_all.max()))
    y0, y1 = int(np.floor(y_all.min())), int(np.ceil(y_all.max()))
    shape = (y1 - y0 + 1, x1 - x0 + 1)
    if shape[0] * shape[1] > options.max_pixels:
        raise MosaicError(
            f"mosaic grid {shape[1]} x {shape[0]} px exceeds max_pixels "
            f"{options.max_pixels} (tile centres RA {np.round(centres[:, 0], 3).tolist()})"
        )
    wcs.wcs.crpix = [1.0 - x0, 1.0 - y0]
    wcs.wcs.set()
    wcs.pixel_shape = (shape[1], shape[0])
    logger.debug("mosaic grid %d x %d px, centre %s", shape[1], shape[0], centre)
    return Grid(wcs=wcs, shape=shape)


def footprint_bounds(grid: Grid, wcs: WCS, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the box of mosaic pixels a tile can touch (clipped, end-exclusive)."""
    lon, lat = wcs.pixel_to_world_values(*edge_samples(shape))
    x, y = grid.wcs.world_to_pixel_values(lon, lat)
    ny, nx = grid.shape
    x0 = max(0, int(np.floor(np.nanmin(x))))
    x1 = min(nx, int(np.ceil(np.nanmax(x))) + 1)
    y0 = max(0, int(np.floor(np.nanmin(y))))
    y1 = min(ny, int(np.ceil(np.nanmax(y))) + 1)
    return y0, y1, x0, x1
