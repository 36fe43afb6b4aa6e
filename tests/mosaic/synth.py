"""Synthetic DSA-110 drift-scan tiles for the mosaic tests and the benchmark.

Each tile is what the imaging stage writes for one group: an apparent-sky image
(Jy/beam; point sources restored with a Gaussian beam, each attenuated by the primary
beam at its position, plus noise correlated on the beam scale) and the primary beam on
the same 2D SIN grid: the Airy power beam of :mod:`dsa_stream.beam` averaged over the
drift of the pointing during the observation (RA = LST at HA 0 moves 1.292 deg) and
over the band.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from dsa_stream import instrument, naming
from dsa_stream.beam import airy_power
from dsa_stream.mosaic.options import ExpectedSource, MosaicTile

#: RA step between consecutive groups (deg): 309.24 s of sidereal rotation.
DRA_DEG = instrument.OBSERVATION_S * 360.0 / 86164.0905
#: Band sampled for the band-averaged beam (Hz).
BEAM_FREQS_HZ = (1.33e9, 1.405e9, 1.48e9)
T0 = datetime(2026, 3, 1, 2, 0, 0, tzinfo=UTC)
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class TileSpec:
    ra_deg: float
    dec_deg: float
    npix: int
    cell_arcsec: float
    obs_start: datetime
    rms_jy: float
    bmaj_deg: float
    bmin_deg: float
    seed: int


def tile_wcs(ra: float, dec: float, npix: int, cell_arcsec: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [ra % 360.0, dec]
    w.wcs.crpix = [npix / 2 + 1.0, npix / 2 + 1.0]
    w.wcs.cdelt = [-cell_arcsec / 3600.0, cell_arcsec / 3600.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    return w


def _separation(ra1, dec1, ra2, dec2):  # degrees in, radians out
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    s = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return 2 * np.arcsin(np.sqrt(np.clip(s, 0, 1)))


def drift_beam_at(ra, dec, ra_c: float, dec_c: float, n_time: int = 7) -> np.ndarray:
    """Drift- and band-averaged Airy power beam at (ra, dec) for a pointing centred on ra_c."""
    out = np.zeros(np.broadcast(ra, dec).shape)
    offsets = (np.arange(n_time) + 0.5) / n_time - 0.5
    for dt in offsets * DRA_DEG:
        theta = _separation(ra_c + dt, dec_c, ra, dec)
        for f in BEAM_FREQS_HZ:
            out += airy_power(theta, f)
    return out / (n_time * len(BEAM_FREQS_HZ))


def drift_beam_image(w: WCS, npix: int, ra_c: float, dec_c: float, step: int = 8) -> np.ndarray:
    """The beam on the tile grid (exact every ``step`` pixels, cubic in between)."""
    nodes = np.arange(0, npix + step, step, dtype=float)
    yy, xx = np.meshgrid(nodes, nodes, indexing="ij")
    ra, dec = w.pixel_to_world_values(xx, yy)
    coarse = drift_beam_at(ra, dec, ra_c, dec_c)
    yy, xx = np.mgrid[0:npix, 0:npix].astype(float) / step
    return ndimage.map_coordinates(coarse, [yy, xx], order=3, mode="nearest")


def correlated_noise(rng, shape, rms: float, sigma_px: float) -> np.ndarray:
    white = rng.normal(0.0, 1.0, shape)
    smooth = ndimage.gaussian_filter(white, sigma_px, mode="wrap")
    return smooth * (rms / smooth.std())


def render_tile(
    spec: TileSpec, sources: list[ExpectedSource]
) -> tuple[np.ndarray, np.ndarray, WCS]:
    w = tile_wcs(spec.ra_deg, spec.dec_deg, spec.npix, spec.cell_arcsec)
    beam = drift_beam_image(w, spec.npix, spec.ra_deg, spec.dec_deg)
    rng = np.random.default_rng(spec.seed)
    sig_y = spec.bmaj_deg * 3600 / spec.cell_arcsec * FWHM_TO_SIGMA  # BPA 0: major axis N-S
    sig_x = spec.bmin_deg * 3600 / spec.cell_arcsec * FWHM_TO_SIGMA
    image = correlated_noise(rng, beam.shape, spec.rms_jy, np.sqrt(sig_x * sig_y))
    if sources:
        ra = np.array([s.ra_deg for s in sources])
        dec = np.array([s.dec_deg for s in sources])
        xs, ys = w.world_to_pixel_values(ra % 360.0, dec)
        att = drift_beam_at(ra, dec, spec.ra_deg, spec.dec_deg)
        half = int(6 * max(sig_x, sig_y)) + 1
        for s, x, y, a in zip(sources, xs, ys, att, strict=True):
            if not (-half < x < spec.npix + half and -half < y < spec.npix + half):
                continue
            i0, i1 = max(0, int(y) - half), min(spec.npix, int(y) + half + 1)
            j0, j1 = max(0, int(x) - half), min(spec.npix, int(x) + half + 1)
            if i1 <= i0 or j1 <= j0:
                continue
            yy, xx = np.mgrid[i0:i1, j0:j1]
            g = np.exp(-0.5 * (((xx - x) / sig_x) ** 2 + ((yy - y) / sig_y) ** 2))
            image[i0:i1, j0:j1] += a * s.flux_jy * g
    return image, beam, w


def _header(spec: TileSpec, w: WCS, ndim: int, bunit: str) -> fits.Header:
    h = w.to_header()
    if ndim == 4:
        w4 = WCS(naxis=4)
        w4.wcs.ctype = [*w.wcs.ctype, "FREQ", "STOKES"]
        w4.wcs.crval = [*w.wcs.crval, 1.405e9, 1.0]
        w4.wcs.crpix = [*w.wcs.crpix, 1.0, 1.0]
        w4.wcs.cdelt = [*w.wcs.cdelt, 187.5e6, 1.0]
        w4.wcs.cunit = ["deg", "deg", "Hz", ""]
        w4.wcs.radesys = "ICRS"
        h = w4.to_header()
    end = spec.obs_start + timedelta(seconds=instrument.OBSERVATION_S)
    h["BUNIT"] = bunit
    h["BMAJ"] = spec.bmaj_deg
    h["BMIN"] = spec.bmin_deg
    h["BPA"] = 0.0
    h["TELESCOP"] = instrument.TELESCOPE_NAME
    h["DATE-OBS"] = spec.obs_start.strftime("%Y-%m-%dT%H:%M:%S.%f")
    h["DATE-END"] = end.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return h


def write_tile(
    out_dir: Path,
    spec: TileSpec,
    sources: list[ExpectedSource],
    *,
    ndim: int = 2,
    give_rms: bool = True,
) -> MosaicTile:
    image, beam, w = render_tile(spec, sources)
    key = naming.group_key(spec.obs_start)
    stem = key.replace(":", "")
    shape = (1, 1, spec.npix, spec.npix) if ndim == 4 else (spec.npix, spec.npix)
    img_path, pb_path = out_dir / f"{stem}-image.fits", out_dir / f"{stem}-pb.fits"
    fits.writeto(
        img_path, image.astype(np.float32).reshape(shape), _header(spec, w, ndim, "Jy/beam")
    )
    fits.writeto(pb_path, beam.astype(np.float32).reshape(shape), _header(spec, w, ndim, ""))
    return MosaicTile(
        group_key=key,
        image_path=img_path,
        beam_path=pb_path,
        image_id=f"image:{key}:v1",
        obs_start=spec.obs_start,
        obs_end=spec.obs_start + timedelta(seconds=instrument.OBSERVATION_S),
        dec_deg=spec.dec_deg,
        rms_jy=spec.rms_jy if give_rms else None,
    )


def strip_specs(
    ra0: float,
    dec: float,
    n: int,
    npix: int,
    cell_arcsec: float = 8.0,
    rms_jy: float = 3e-3,
    bmaj_arcsec: float = 28.0,
    bmin_arcsec: float = 24.0,
    seed: int = 0,
    skip: tuple[int, ...] = (),
) -> list[TileSpec]:
    """Consecutive groups: RA steps DRA_DEG, start times 309.24 s apart."""
    return [
        TileSpec(
            ra_deg=(ra0 + k * DRA_DEG) % 360.0,
            dec_deg=dec,
            npix=npix,
            cell_arcsec=cell_arcsec,
            obs_start=T0 + timedelta(seconds=k * instrument.OBSERVATION_S + 0.4),
            rms_jy=rms_jy * (1.0 + 0.15 * (k % 3)),
            bmaj_deg=bmaj_arcsec / 3600.0,
            bmin_deg=bmin_arcsec / 3600.0,
            seed=seed + k,
        )
        for k in range(n)
        if k not in skip
    ]


def strip_sources(specs: list[TileSpec], dec_offsets=(-0.25, 0.0, 0.2)) -> list[ExpectedSource]:
    """Sources at tile centres and half-way between neighbouring tiles (overlaps)."""
    out = []
    ras = [s.ra_deg for s in specs]
    dec = specs[0].dec_deg
    positions = list(ras)
    positions += [
        (a + ((b - a + 180) % 360 - 180) / 2) % 360 for a, b in zip(ras, ras[1:], strict=False)
    ]
    for k, ra in enumerate(positions):
        for j, dd in enumerate(dec_offsets):
            flux = 0.4 + 0.3 * ((k + j) % 4)
            ra_off = 0.05 * (j - 1) / np.cos(np.radians(dec))
            out.append(
                ExpectedSource(
                    ra_deg=(ra + ra_off) % 360.0, dec_deg=dec + dd, flux_jy=flux, name=f"s{k}_{j}"
                )
            )
    return out
