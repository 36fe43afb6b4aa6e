"""Primary-beam-weighted coadd on synthetic DSA-110 tiles: flux, position, noise, grid, files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, WCSCOMPARE_ANCILLARY

from dsa_stream.exceptions import MosaicError
from dsa_stream.mosaic.api import build_mosaic
from dsa_stream.mosaic.coadd import coadd_tiles, robust_rms
from dsa_stream.mosaic.fitsio import tile_from_fits
from dsa_stream.mosaic.options import CoaddOptions, ExpectedSource, MosaicOptions, QAOptions
from dsa_stream.mosaic.results import MosaicResult
from tests.mosaic.conftest import Strip
from tests.mosaic.synth import strip_specs, tile_wcs, write_tile

STRIPS = ["strip16", "strip55", "strip72wrap", "strip16fine"]


def _inside(spec, ra: float, dec: float, margin_px: float = 8) -> bool:
    w = tile_wcs(spec.ra_deg, spec.dec_deg, spec.npix, spec.cell_arcsec)
    x, y = w.world_to_pixel_values(ra % 360, dec)
    return bool(
        margin_px <= x <= spec.npix - 1 - margin_px and margin_px <= y <= spec.npix - 1 - margin_px
    )


@pytest.mark.parametrize("name", STRIPS)
def test_sources_within_3_percent_and_a_tenth_of_a_beam(name: str, request) -> None:
    strip: Strip = request.getfixturevalue(name)
    qa = strip.result.qa
    assert qa.passed, qa.failures
    checks = {c.name: c for c in qa.sources}
    assert len(checks) == len(strip.sources)  # every source is inside and bright enough
    for c in checks.values():
        assert c.found, c
        assert abs(c.flux_ratio - 1) < 0.03, c
        assert c.offset_beams < 0.1, c
    overlap = [
        s
        for s in strip.sources
        if sum(_inside(spec, s.ra_deg, s.dec_deg) for spec in strip.specs) >= 2
    ]
    assert len(overlap) >= 3  # sources where two tiles overlap are among them
    assert all(checks[s.name].found for s in overlap)
    print(
        f"{name}: {len(checks)} sources ({len(overlap)} in overlaps), flux ratio "
        f"{qa.flux_ratio_min:.4f}..{qa.flux_ratio_max:.4f} (median {qa.flux_ratio_median:.4f}), "
        f"offset max {qa.offset_beams_max:.4f} beam, noise ratio {qa.noise_ratio:.3f}"
    )


@pytest.mark.parametrize("name", STRIPS)
def test_noise_map_predicts_the_measured_noise(name: str, request) -> None:
    strip: Strip = request.getfixturevalue(name)
    mosaic = fits.getdata(strip.result.mosaic_path)
    noise = fits.getdata(strip.result.noise_path)
    valid = np.isfinite(mosaic)
    assert np.array_equal(valid, np.isfinite(noise))
    assert 0.9 < strip.result.qa.noise_ratio < 1.1
    # per depth bin: the deep middle and the shallow edges alike
    edges = np.quantile(noise[valid], [0.0, 0.25, 0.5, 0.75, 1.0])
    for lo, hi in zip(edges, edges[1:], strict=False):
        sel = valid & (noise >= lo) & (noise <= hi)
        ratio = robust_rms(mosaic[sel]) / float(np.median(noise[sel]))
        assert 0.85 < ratio < 1.15, (lo, hi, ratio)


def test_grid_across_ra_zero_is_narrow_and_centred(strip72wrap: Strip) -> None:
    res = strip72wrap.result
    w = WCS(fits.getheader(res.mosaic_path))
    assert w.naxis == 2 and w.has_celestial
    ra_c = w.wcs.crval[0]
    assert 0 <= ra_c < 360
    centres = np.radians([s.ra_deg for s in strip72wrap.specs])
    expected = math.degrees(math.atan2(np.sin(centres).sum(), np.cos(centres).sum())) % 360
    assert abs((ra_c - expected + 180) % 360 - 180) < 0.05 and abs(ra_c - 359.73) < 0.05
    ny, nx = res.shape
    cell = abs(res.cdelt_deg[0])
    width_on_sky = (6 - 1) * 1.292 * math.cos(math.radians(71.6)) + 320 * 8 / 3600
    assert nx * cell < 1.15 * width_on_sky  # not a 360-degree strip
    ra, _ = w.pixel_to_world_values(*np.meshgrid(np.arange(0, nx, 37), np.arange(0, ny, 37)))
    assert np.all((ra >= 0) & (ra < 360))
    assert ra.min() < 1 and ra.max() > 359  # the grid does cross 0/360
    for spec in strip72wrap.specs:
        x, y = w.world_to_pixel_values(spec.ra_deg, spec.dec_deg)
        assert 0 < x < nx and 0 < y < ny
    # the same footprint as reproject's find_optimal_celestial_wcs (the reference helper)
    from reproject.mosaicking import find_optimal_celestial_wcs

    ref_wcs, ref_shape = find_optimal_celestial_wcs(
        [
            ((s.npix, s.npix), tile_wcs(s.ra_deg, s.dec_deg, s.npix, s.cell_arcsec))
            for s in strip72wrap.specs
        ],
        projection="SIN",
    )
    assert abs(ref_shape[1] - nx) / nx < 0.03 and abs(ref_shape[0] - ny) / ny < 0.05


def test_nan_outside_coverage(gapstrip: Strip) -> None:
    res = gapstrip.result
    mosaic = fits.getdata(res.mosaic_path)
    w = WCS(fits.getheader(res.mosaic_path))
    ny, nx = mosaic.shape
    assert np.isnan(mosaic[0, 0]) and np.isnan(mosaic[-1, -1])  # SIN-curved corners
    missing = strip_specs(200.0, 54.6, 5, 480)[2]
    x, y = (int(round(float(v))) for v in w.world_to_pixel_values(missing.ra_deg, missing.dec_deg))
    assert np.all(np.isnan(mosaic[:, x - 5 : x + 6]))  # no tile there: a NaN band
    assert np.isfinite(mosaic[y, x - 300]) and np.isfinite(mosaic[y, x + 300])
    assert res.qa.coverage_fraction == 1.0 and res.qa.valid_fraction < 0.9
    assert res.qa.passed


def test_sensitivity_cutoff(strip16: Strip, tmp_path: Path) -> None:
    coadd = coadd_tiles(strip16.tiles[:1], CoaddOptions(sensitivity_cutoff=0.8))
    valid = np.isfinite(coadd.mosaic)
    assert coadd.valid_pixels < coadd.footprint_pixels  # the beam drops below 0.8 of its peak
    nmin = float(np.nanmin(coadd.noise))
    assert float(np.nanmax(coadd.noise)) <= nmin / 0.8 * (1 + 1e-6)
    full = coadd_tiles(strip16.tiles[:1], CoaddOptions(sensitivity_cutoff=0.0))
    ring = np.isfinite(full.mosaic) & ~valid
    assert ring.any() and np.all(full.noise[ring] > nmin / 0.8 * (1 - 1e-3))


def test_fits_products(strip16: Strip) -> None:
    res = strip16.result
    h = fits.getheader(res.mosaic_path)
    data = fits.getdata(res.mosaic_path)
    assert h["NAXIS"] == 2 and data.dtype == np.dtype(">f4")
    assert 0 <= h["CRVAL1"] < 360 and h["CTYPE1"] == "RA---SIN" and h["BUNIT"] == "Jy/beam"
    assert h["TELESCOP"] == "DSA_110" and h["NIMAGES"] == 4
    assert h["BMAJ"] == pytest.approx(28 / 3600) and h["BMIN"] == pytest.approx(24 / 3600)
    assert h["BPA"] == 0 and h["BSPREAD"] == 0
    assert h["DATE-OBS"] == res.tiles[0].obs_start.isoformat()[:23]
    assert h["MJD-END"] > h["MJD-OBS"] and h["DATE-END"].startswith("2026-03-01T02:20:")
    assert h["WINDOW"] == res.window_key == res.tiles[0].group_key and h["WINVER"] == 1
    assert h["CFGHASH"] == "0123456789abcdef" and h["PIPEVER"]
    for i, t in enumerate(res.tiles, start=1):
        assert h[f"MGRP{i:03d}"] == t.group_key and h[f"MIMG{i:03d}"] == t.image_id
    assert h["QAPASS"] is True and "QAFAIL1" not in h
    assert any("software numpy" in str(v) for v in h["HISTORY"])
    assert h["FREQ"] == pytest.approx(1.405e9)
    hn = fits.getheader(res.noise_path)
    assert hn["MAPTYPE"] == "EXPECTED_NOISE" and hn["BUNIT"] == "Jy/beam"
    assert WCS(hn).wcs.compare(WCS(h).wcs, cmp=WCSCOMPARE_ANCILLARY)
    assert MosaicResult.model_validate_json(res.qa_path.read_text()) == res
    leftovers = [p for p in os.listdir(strip16.out_dir) if ".tmp-" in p]
    assert not leftovers


def test_png_preview(strip55: Strip) -> None:
    import matplotlib.image

    path = strip55.result.preview_path
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000
    img = matplotlib.image.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 600 and float(img[..., :3].std()) > 0.05


def test_tile_rms_is_estimated_when_missing(strip72wrap: Strip) -> None:
    for spec, tile, used in zip(
        strip72wrap.specs, strip72wrap.tiles, strip72wrap.result.tiles, strict=True
    ):
        if tile.rms_jy is None:
            assert used.rms_source == "robust"
            assert used.rms_jy == pytest.approx(spec.rms_jy, rel=0.05)
        else:
            assert used.rms_source == "given" and used.rms_jy == tile.rms_jy
        assert used.weight == pytest.approx(used.rms_jy**-2)


def test_bilinear_resampling_loses_peak_flux_cubic_does_not(
    strip72wrap: Strip, tmp_path: Path
) -> None:
    opts = MosaicOptions(
        coadd=CoaddOptions(interpolation_order=1, preview=False), qa=QAOptions(min_members=6)
    )
    res = build_mosaic(
        strip72wrap.tiles, tmp_path / "m", opts, expected_sources=strip72wrap.sources
    )
    assert res.qa.flux_ratio_median < 0.97 < strip72wrap.result.qa.flux_ratio_median


def test_qa_failures_are_recorded_not_raised(strip55: Strip, tmp_path: Path) -> None:
    opts = MosaicOptions(
        coadd=CoaddOptions(preview=False),
        qa=QAOptions(min_members=10, min_dynamic_range=1e6, noise_ratio_max=0.5),
    )
    res = build_mosaic(
        strip55.tiles, tmp_path / "m", opts, expected_sources=strip55.sources, version=3
    )
    assert not res.qa.passed and len(res.qa.failures) == 3
    h = fits.getheader(res.mosaic_path)
    assert h["QAPASS"] is False and h["QAFAIL1"].startswith("members 4 < 10")
    assert h["WINVER"] == 3 and res.preview_path is None


def test_tile_from_fits_reads_times_and_identity(strip16: Strip) -> None:
    tile = strip16.tiles[1]
    got = tile_from_fits(tile.image_path, tile.beam_path)
    assert got.group_key == tile.group_key
    assert abs((got.obs_start - tile.obs_start).total_seconds()) < 1e-3
    assert abs((got.obs_end - tile.obs_end).total_seconds()) < 1e-3
    assert got.image_id.startswith(tile.image_path.name + "#xxh64:")
    assert got.dec_deg == pytest.approx(16.0) and got.rms_jy is None


def test_bad_inputs_raise_mosaic_error(strip16: Strip, strip55: Strip, tmp_path: Path) -> None:
    with pytest.raises(MosaicError, match="no tiles"):
        build_mosaic([], tmp_path / "m")
    with pytest.raises(MosaicError, match="twice"):
        coadd_tiles([strip16.tiles[0], strip16.tiles[0]])
    wrong = strip16.tiles[0].model_copy(update={"beam_path": strip55.tiles[0].beam_path})
    with pytest.raises(MosaicError, match="not on the grid"):
        coadd_tiles([wrong])
    cube = tmp_path / "cube.fits"
    fits.writeto(cube, np.zeros((2, 8, 8), np.float32), tile_wcs(0, 0, 8, 8).to_header())
    with pytest.raises(MosaicError, match="degenerate"):
        coadd_tiles([strip16.tiles[0].model_copy(update={"image_path": cube, "beam_path": cube})])


@pytest.mark.parametrize("order", [1, 3, 5])
def test_single_tile_is_its_image_over_its_beam_resampled(order: int, tmp_path: Path) -> None:
    from scipy import ndimage

    (spec,) = strip_specs(10.0, 30.0, 1, 200)
    tile = write_tile(tmp_path, spec, [])
    coadd = coadd_tiles([tile], CoaddOptions(interpolation_order=order))
    assert coadd.grid.shape[0] in range(200, 204) and coadd.grid.shape[1] in range(200, 204)
    img = fits.getdata(tile.image_path).astype(float)
    pb = fits.getdata(tile.beam_path).astype(float)
    w = WCS(fits.getheader(tile.image_path))
    rows, cols = np.meshgrid(np.arange(20, 180, 23), np.arange(20, 180, 19), indexing="ij")
    x, y = w.world_to_pixel_values(*coadd.grid.wcs.pixel_to_world_values(cols, rows))
    want = ndimage.map_coordinates(
        img, [y, x], order=order, mode="mirror"
    ) / ndimage.map_coordinates(pb, [y, x], order=1)
    assert np.allclose(coadd.mosaic[rows, cols], want, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", ["strip72wrap", "strip16fine"])  # spline, cubic
def test_beam_with_nan_outside_a_cutoff(name: str, request, tmp_path: Path) -> None:
    """Imagers may blank the beam (and image) below a level: NaN never leaks in."""
    strip: Strip = request.getfixturevalue(name)
    tiles = []
    for tile in strip.tiles:
        with fits.open(tile.beam_path) as hdul:
            pb = hdul[0].data.astype(np.float32)
            header = hdul[0].header
        pb[pb < np.percentile(pb, 30)] = np.nan  # blank the outer 30 %: a disc per tile
        path = tmp_path / tile.beam_path.name
        fits.writeto(path, pb, header)
        tiles.append(tile.model_copy(update={"beam_path": path}))
    opts = MosaicOptions(coadd=CoaddOptions(preview=False), qa=QAOptions(min_members=len(tiles)))
    res = build_mosaic(tiles, tmp_path / "m", opts, expected_sources=strip.sources)
    mosaic = fits.getdata(res.mosaic_path)
    assert np.isnan(mosaic).any() and not np.isinf(mosaic).any()
    assert res.qa.n_sources_checked >= 8
    found = [c for c in res.qa.sources if c.found]
    assert len(found) == res.qa.n_sources_checked
    assert all(abs(c.flux_ratio - 1) < 0.03 and c.offset_beams < 0.1 for c in found)
    assert 0.9 < res.qa.noise_ratio < 1.1


def test_auto_resampler_is_cubic_only_for_well_sampled_beams(
    strip16: Strip, strip16fine: Strip
) -> None:
    assert {t.resampler for t in strip16fine.result.tiles} == {"cubic"}
    assert {t.resampler for t in strip16.result.tiles} == {"spline"}


def test_cubic_matches_the_quintic_spline_on_a_well_sampled_tile(tmp_path: Path) -> None:
    """Catmull-Rom on affine blocks against quintic splines through the exact WCS mapping."""
    (spec,) = strip_specs(10.0, 30.0, 1, 400, cell_arcsec=4.0)
    sources = [
        ExpectedSource(ra_deg=10.0 + dx, dec_deg=30.0 + dy, flux_jy=1.0)
        for dx in (-0.1, 0.0, 0.13)
        for dy in (-0.1, 0.02, 0.12)
    ]
    tile = write_tile(tmp_path, spec, sources)
    cubic = coadd_tiles([tile], CoaddOptions(resampler="cubic", cell_arcsec=3.7))
    spline = coadd_tiles([tile], CoaddOptions(resampler="spline", cell_arcsec=3.7))
    both = np.isfinite(cubic.mosaic) & np.isfinite(spline.mosaic)
    assert both.sum() > 0.5 * both.size
    diff = np.abs(cubic.mosaic - spline.mosaic)[both]
    peak = float(np.nanmax(spline.mosaic))
    assert diff.max() < 0.01 * peak, diff.max() / peak
    assert np.allclose(cubic.noise[both], spline.noise[both], rtol=2e-3)
    rms = float(np.sqrt(np.mean(diff**2)))
    print(f"cubic - quintic: max {diff.max() / peak:.2e}, rms {rms / peak:.2e} of the peak")


def test_affine_blocks_are_within_tolerance_of_the_wcs(strip72wrap: Strip) -> None:
    from dsa_stream.mosaic.coadd import _check_tiles, _node_mapping
    from dsa_stream.mosaic.grid import footprint_bounds, plan_grid
    from dsa_stream.mosaic.resample import affine_blocks, block_coords

    opts = CoaddOptions()
    uses = _check_tiles(strip72wrap.tiles)
    grid = plan_grid([(u.info.wcs, u.info.shape) for u in uses], opts)
    worst = 0.0
    for use in (uses[0], uses[-1]):  # the tiles farthest from the grid centre
        box = footprint_bounds(grid, use.info.wcs, use.info.shape)
        nx_, ny_ = _node_mapping(grid, use.info.wcs, box, opts.coord_step_px)
        for block in affine_blocks(nx_, ny_, box, opts.coord_step_px, 128, 0.01):
            bx, by = block_coords(block)
            rows = np.arange(block.r0, block.r1)[:, None] + 0 * np.arange(block.c0, block.c1)
            cols = 0 * rows + np.arange(block.c0, block.c1)
            ex, ey = use.info.wcs.world_to_pixel_values(*grid.wcs.pixel_to_world_values(cols, rows))
            ok = np.isfinite(ex) & np.isfinite(ey)
            worst = max(worst, float(np.hypot(bx - ex, by - ey)[ok].max()))
    assert worst < 0.02, worst
