"""Primary-beam-weighted linear mosaic, accumulated tile by tile.

    M(x) = sum_i w_i B_i(x) I_i(x) / sum_i w_i B_i(x)^2,      w_i = 1 / rms_i^2

with I_i the apparent image (Jy/beam, not primary-beam corrected) and B_i its primary
beam, both resampled onto the mosaic grid. For apparent images with uniform noise
rms_i, the noise of M is sigma(x) = 1 / sqrt(sum_i w_i B_i(x)^2): the noise map.

Memory: two float32 accumulators of the mosaic size, plus per tile its data, its
weighted beam and temporaries of one block. A tile is resampled only over the box of
mosaic pixels it can touch, never onto a full mosaic-sized array. The mapping from
mosaic pixels to tile pixels is computed exactly (wcslib) on a coarse grid every
``coord_step_px`` pixels; between the nodes it is smooth.

Two resamplers (``CoaddOptions.resampler``):

* ``cubic``: the footprint is cut into blocks over which the mapping is affine within
  ``affine_tol_px`` and each block is resampled with Catmull-Rom cubic convolution in
  one C call (:mod:`dsa_stream.mosaic.resample`); the weighted beam is taken at the
  nearest tile pixel, which also carries the validity mask. Used (``auto``) when the
  restoring beam spans at least ``cubic_min_px_per_beam`` pixels, as at the imaging
  defaults.
* ``spline``: the node mapping is interpolated bilinearly to every pixel and the image
  evaluated with a spline of ``interpolation_order`` (``scipy.ndimage``), the beam and
  the mask bilinearly; slower, but better for a beam sampled with only ~3 pixels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.wcs import WCS
from scipy import ndimage

from dsa_stream.exceptions import MosaicError
from dsa_stream.mosaic.fitsio import PlaneInfo, read_info, read_plane, same_grid
from dsa_stream.mosaic.grid import Grid, footprint_bounds, plan_grid
from dsa_stream.mosaic.options import CoaddOptions, MosaicTile
from dsa_stream.mosaic.resample import affine_blocks, block_coords, resample_block

logger = logging.getLogger(__name__)

#: Largest number of pixels used for a robust rms (a regular subsample beyond).
_RMS_MAX_SAMPLES = 4_000_000


@dataclass
class TileUse:
    """How one tile was used (filled in while accumulating)."""

    tile: MosaicTile
    info: PlaneInfo
    rms_jy: float = float("nan")
    rms_source: str = "given"
    weight: float = float("nan")
    pixels_used: int = 0
    resampler: str = ""
    """``cubic`` or ``spline`` (see :func:`choose_resampler`)."""


@dataclass
class Coadd:
    """The accumulated mosaic and its noise map (NaN where not valid)."""

    grid: Grid
    mosaic: np.ndarray
    """float32 Jy/beam."""
    noise: np.ndarray
    """float32 expected noise 1/sqrt(sum w B^2), Jy/beam."""
    footprint_pixels: int
    """Pixels with data from at least one tile."""
    valid_pixels: int
    """Pixels above the sensitivity cutoff."""
    uses: list[TileUse]
    timings_s: dict[str, float] = field(default_factory=dict)


def robust_rms(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation of the finite values (a robust sigma)."""
    v = np.asarray(values).ravel()
    if v.size > _RMS_MAX_SAMPLES:
        v = v[:: int(np.ceil(v.size / _RMS_MAX_SAMPLES))]
    v = v[np.isfinite(v)].astype(np.float64)
    if v.size == 0:
        raise MosaicError("no finite pixel to compute an rms from")
    med = np.median(v)
    return float(1.482602218505602 * np.median(np.abs(v - med)))


def _check_tiles(tiles: Sequence[MosaicTile]) -> list[TileUse]:
    keys = [t.group_key for t in tiles]
    if len(set(keys)) != len(keys):
        raise MosaicError(f"a group is listed twice among the tiles: {sorted(keys)}")
    uses = []
    for tile in sorted(tiles, key=lambda t: (t.obs_start, t.group_key)):
        info = read_info(tile.image_path)
        if not same_grid(info, read_info(tile.beam_path)):
            raise MosaicError(
                f"tile {tile.group_key}: the beam {tile.beam_path} is not on the grid of "
                f"the image {tile.image_path}"
            )
        uses.append(TileUse(tile=tile, info=info))
    return uses


def _node_mapping(
    grid: Grid, wcs_in: WCS, box: tuple[int, int, int, int], step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Tile pixel coordinates (x, y) of mosaic pixels on a grid of nodes ``step`` apart."""
    y0, y1, x0, x1 = box
    ny_nodes = (y1 - 1 - y0) // step + 2
    nx_nodes = (x1 - 1 - x0) // step + 2
    yy, xx = np.mgrid[0:ny_nodes, 0:nx_nodes].astype(np.float64)
    lon, lat = grid.wcs.pixel_to_world_values(x0 + xx * step, y0 + yy * step)
    x, y = wcs_in.world_to_pixel_values(lon, lat)
    bad = ~(np.isfinite(x) & np.isfinite(y))
    x[bad], y[bad] = -1e9, -1e9  # never inside a tile
    return x, y


def _prepare(use: TileUse, options: CoaddOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spline coefficients of the image, the beam (0 where invalid) and the valid mask."""
    image = read_plane(use.tile.image_path)
    beam = read_plane(use.tile.beam_path)
    valid = np.isfinite(image) & np.isfinite(beam) & (beam >= options.tile_beam_min)
    if not valid.any():
        raise MosaicError(f"tile {use.tile.group_key}: no pixel with a usable beam")
    _set_weight(use, image, valid)
    if not valid.all():
        image[~valid] = 0.0
        beam[~valid] = 0.0
        # keep clear of invalid pixels by the spline's support radius plus the reach of
        # the prefilter's response to the zeros (the image border needs no margin: the
        # spline mirrors the data there)
        margin = 2 * ((options.interpolation_order + 1) // 2) + 2
        valid = ndimage.binary_erosion(valid, iterations=margin, border_value=1)
    if options.interpolation_order > 1:
        image = ndimage.spline_filter(image, order=options.interpolation_order, mode="mirror")
    return image, beam, valid


def _valid_box(valid: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x0, x1, y0, y1) when the valid pixels fill exactly that rectangle, else None."""
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    if rows.size == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1], cols[0], cols[-1]
    if not valid[r0 : r1 + 1, c0 : c1 + 1].all():
        return None
    return float(c0), float(c1), float(r0), float(r1)


def _lerp_rows(nodes: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``nodes`` along axis 0 at fractional indices ``frac``."""
    j = np.minimum(frac.astype(np.intp), nodes.shape[0] - 2)
    f = (frac - j)[:, None]
    return nodes[j] * (1.0 - f) + nodes[j + 1] * f


def choose_resampler(use: TileUse, grid: Grid, options: CoaddOptions) -> str:
    """``cubic`` (fast) when the tile's BMIN spans enough mosaic pixels, else ``spline``."""
    if options.resampler != "auto":
        return options.resampler
    if use.info.bmin_deg is None:
        return "spline"
    cell = float(np.abs(grid.wcs.wcs.cdelt).min())
    return "cubic" if use.info.bmin_deg / cell >= options.cubic_min_px_per_beam else "spline"


def _accumulate(
    use: TileUse, grid: Grid, num: np.ndarray, den: np.ndarray, options: CoaddOptions
) -> None:
    """Add one tile's w B I and w B^2 into the accumulators (in place)."""
    use.resampler = choose_resampler(use, grid, options)
    if use.resampler == "cubic":
        _accumulate_cubic(use, grid, num, den, options)
    else:
        _accumulate_spline(use, grid, num, den, options)


def _weighted_beam(use: TileUse, options: CoaddOptions) -> tuple[np.ndarray, np.ndarray]:
    """The image (float32, 0 where invalid) and w B (0 outside the eroded valid region).

    The valid region is eroded by the cubic kernel's reach (2 pixels) plus one, at the
    tile border too, so that every pixel whose nearest tile pixel is valid is
    interpolated from valid pixels only.
    """
    image = read_plane(use.tile.image_path, np.float32)
    beam = read_plane(use.tile.beam_path, np.float32)
    valid = np.isfinite(image) & np.isfinite(beam) & (beam >= options.tile_beam_min)
    if not valid.any():
        raise MosaicError(f"tile {use.tile.group_key}: no pixel with a usable beam")
    _set_weight(use, image, valid)
    image[~valid] = 0.0
    valid = ndimage.binary_erosion(valid, iterations=3, border_value=0)
    wb = np.where(valid, np.float32(use.weight) * beam, np.float32(0.0))
    return image, wb


def _accumulate_cubic(
    use: TileUse, grid: Grid, num: np.ndarray, den: np.ndarray, options: CoaddOptions
) -> None:
    """The cubic path: Catmull-Rom on locally affine blocks (:mod:`.resample`).

    The beam is taken at the nearest tile pixel (it varies by < 0.05 % per pixel).
    """
    image, wb = _weighted_beam(use, options)
    box = footprint_bounds(grid, use.info.wcs, use.info.shape)
    y0, y1, x0, x1 = box
    if y1 <= y0 or x1 <= x0:
        return
    step = options.coord_step_px
    node_x, node_y = _node_mapping(grid, use.info.wcs, box, step)
    ny, nx = wb.shape
    flat = wb.ravel()
    inv_w = np.float32(1.0 / use.weight)
    for block in affine_blocks(
        node_x, node_y, box, step, options.affine_block_px, options.affine_tol_px
    ):
        bx, by = block_coords(block)
        ix = np.rint(bx).astype(np.intp)
        iy = np.rint(by).astype(np.intp)
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        if not inside.any():
            continue
        k = np.where(inside, iy * nx + ix, 0)
        b = np.where(inside, flat[k], np.float32(0.0))
        if not b.any():
            continue
        img = resample_block(image, block)
        sl = (slice(block.r0, block.r1), slice(block.c0, block.c1))
        num[sl] += b * img
        den[sl] += b * b * inv_w
        use.pixels_used += int(np.count_nonzero(b))


def _set_weight(use: TileUse, image: np.ndarray, valid: np.ndarray) -> None:
    if use.tile.rms_jy is None:
        use.rms_jy, use.rms_source = robust_rms(image[valid]), "robust"
    else:
        use.rms_jy = use.tile.rms_jy
    if not use.rms_jy > 0:
        raise MosaicError(f"tile {use.tile.group_key}: rms {use.rms_jy} is not positive")
    use.weight = 1.0 / use.rms_jy**2


def _accumulate_spline(
    use: TileUse, grid: Grid, num: np.ndarray, den: np.ndarray, options: CoaddOptions
) -> None:
    """The spline path: ``map_coordinates`` of ``interpolation_order`` per mosaic pixel."""
    coeffs, beam, valid = _prepare(use, options)
    box = footprint_bounds(grid, use.info.wcs, use.info.shape)
    y0, y1, x0, x1 = box
    if y1 <= y0 or x1 <= x0:
        return
    step = options.coord_step_px
    node_x, node_y = _node_mapping(grid, use.info.wcs, box, step)
    fx = np.arange(x1 - x0, dtype=np.float64) / step
    # tile coordinates along every mosaic column at the node rows (bilinear in between)
    cols_x, cols_y = _lerp_rows(node_x.T, fx).T, _lerp_rows(node_y.T, fx).T
    rect = _valid_box(valid)
    mask = None if rect is not None else valid.astype(np.float32)
    lo_x, hi_x, lo_y, hi_y = rect or (0.0, coeffs.shape[1] - 1.0, 0.0, coeffs.shape[0] - 1.0)
    for r0 in range(y0, y1, options.block_rows):
        r1 = min(r0 + options.block_rows, y1)
        fy = np.arange(r0 - y0, r1 - y0, dtype=np.float64) / step
        ix, iy = _lerp_rows(cols_x, fy), _lerp_rows(cols_y, fy)
        ok = (ix >= lo_x) & (ix <= hi_x) & (iy >= lo_y) & (iy <= hi_y)
        coords = np.array([iy, ix])
        del ix, iy
        if mask is not None:
            ok &= ndimage.map_coordinates(mask, coords, order=1, cval=0.0) > 0.999
        if not ok.any():
            continue
        b = np.where(ok, ndimage.map_coordinates(beam, coords, order=1, cval=0.0), 0.0)
        img = ndimage.map_coordinates(
            coeffs, coords, order=options.interpolation_order, prefilter=False, mode="mirror"
        )
        wb = use.weight * b
        num[r0:r1, x0:x1] += wb * img
        den[r0:r1, x0:x1] += wb * b
        use.pixels_used += int(np.count_nonzero(ok))


def _finish(
    grid: Grid, num: np.ndarray, den: np.ndarray, options: CoaddOptions
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Mosaic and noise map (float32, NaN below the cutoff) from the accumulators.

    Works in place on the accumulators (they are garbage afterwards).
    """
    footprint = int(np.count_nonzero(den))
    if footprint == 0:
        raise MosaicError("no tile contributed to the mosaic grid")
    np.sqrt(den, out=den)  # the sensitivity sqrt(sum w B^2)
    tiny = float(np.finfo(np.float32).tiny)
    valid = den >= max(options.sensitivity_cutoff * float(den.max()), tiny)
    np.divide(num, den, out=num, where=valid)
    np.divide(num, den, out=num, where=valid)  # sum w B I / sum w B^2
    np.divide(1.0, den, out=den, where=valid)  # expected noise
    mosaic, noise = num, den
    mosaic[~valid] = np.nan
    noise[~valid] = np.nan
    return mosaic, noise, footprint, int(np.count_nonzero(valid))


def coadd_tiles(tiles: Sequence[MosaicTile], options: CoaddOptions | None = None) -> Coadd:
    """Coadd tiles into a primary-beam-weighted linear mosaic on a common grid.

    Args:
        tiles: The member images (any order; used in observation-time order).
        options: Cutoffs, interpolation, grid.

    Returns:
        The mosaic and noise map in memory, the grid and how each tile was used.

    Raises:
        MosaicError: unreadable or inconsistent inputs, no overlap, a grid too large.
    """
    opts = options or CoaddOptions()
    t0 = time.perf_counter()
    uses = _check_tiles(tiles)
    grid = plan_grid([(u.info.wcs, u.info.shape) for u in uses], opts)
    t1 = time.perf_counter()
    num = np.zeros(grid.shape, dtype=np.float32)
    den = np.zeros(grid.shape, dtype=np.float32)
    for use in uses:
        _accumulate(use, grid, num, den, opts)
        logger.debug("tile %s: %d pixels (%s)", use.tile.group_key, use.pixels_used, use.resampler)
    t2 = time.perf_counter()
    mosaic, noise, footprint, valid = _finish(grid, num, den, opts)
    del num, den
    t3 = time.perf_counter()
    timings = {"grid": t1 - t0, "accumulate": t2 - t1, "finish": t3 - t2}
    return Coadd(grid, mosaic, noise, footprint, valid, uses, timings)
