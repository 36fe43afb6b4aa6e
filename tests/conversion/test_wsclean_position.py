"""A point source lands at its true ICRS position in a WSClean dirty image of our MS."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from dsa_stream.conversion import convert_group
from dsa_stream.simulate import (
    CorruptionOptions,
    PointSourceSpec,
    SimulationOptions,
    SkyOptions,
    plan_night,
    simulate_night,
)
from dsa_stream.toolrun import ToolCommand, run_tool

from .conftest import fast_options

pytestmark = pytest.mark.wsclean

#: Source offset from the group's midpoint centre: (east, north) in degrees on the sky.
OFFSET_DEG = (0.30, -0.22)


def _simulate(out: Path, dec_deg: float) -> tuple[list[Path], SkyCoord]:
    base = dict(
        out_dir=out,
        n_groups=1,
        antennas=24,
        channels_per_subband=2,
        seed=3,
        dec_deg=dec_deg,
        primary_beam=False,
        corruption=CorruptionOptions(noise=False, gains=False, bandpass=False),
    )
    plan = plan_night(SimulationOptions(**base, sky=SkyOptions(density_per_deg2=0.0)))
    ra0, dec0 = (math.degrees(x) for x in plan.groups[0].mid_icrs_rad)
    centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    east, north = OFFSET_DEG
    src = centre.spherical_offsets_by(east * u.deg, north * u.deg)
    spec = PointSourceSpec(name="src", ra_deg=src.ra.deg, dec_deg=src.dec.deg, flux_jy=5.0)
    sky = SkyOptions(density_per_deg2=0.0, extra_sources=(spec,))
    result = simulate_night(SimulationOptions(**base, sky=sky))
    return sorted(out / f for f in result.groups[0].files), src


def _beam_arcsec(psf_path: Path, scale_arcsec: float) -> float:
    """Equivalent FWHM of the PSF main lobe: area above half maximum near the centre."""
    with fits.open(psf_path) as hdul:
        psf = np.asarray(hdul[0].data, dtype=np.float64).squeeze()
    cy, cx = (n // 2 for n in psf.shape)
    win = psf[cy - 40 : cy + 41, cx - 40 : cx + 41] / psf.max()
    area = float(np.count_nonzero(win > 0.5))
    return math.sqrt(4.0 * area / math.pi) * scale_arcsec


def _peak_position(fits_path: Path) -> SkyCoord:
    """Sub-pixel peak position (quadratic fit on 3x3 pixels)."""
    with fits.open(fits_path) as hdul:
        img = np.asarray(hdul[0].data, dtype=np.float64).squeeze()
        hdr = hdul[0].header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(hdr).celestial
    y, x = np.unravel_index(np.argmax(img), img.shape)
    patch = img[y - 1 : y + 2, x - 1 : x + 2]
    dx = 0.5 * (patch[1, 0] - patch[1, 2]) / (patch[1, 0] - 2 * patch[1, 1] + patch[1, 2])
    dy = 0.5 * (patch[0, 1] - patch[2, 1]) / (patch[0, 1] - 2 * patch[1, 1] + patch[2, 1])
    return wcs.pixel_to_world(x + dx, y + dy)


@pytest.mark.parametrize("dec_deg", [16.0, 54.6, 71.6])
def test_point_source_position(tmp_path: Path, dec_deg: float) -> None:
    files, true_pos = _simulate(tmp_path / "raw", dec_deg)
    ms = tmp_path / "group.ms"
    result = convert_group(files, ms, fast_options())
    assert result.phase_center_deg is not None
    cmd = ToolCommand(
        argv=(
            shutil.which("wsclean") or "wsclean",
            "-quiet",
            "-name",
            str(tmp_path / "img"),
            "-size",
            "768",
            "768",
            "-scale",
            "3asec",
            "-niter",
            "0",
            "-weight",
            "uniform",
            "-no-update-model-required",
            "-make-psf",
            "-temp-dir",
            str(tmp_path),
            str(ms),
        ),
        timeout_s=300,
        cwd=tmp_path,
        label="wsclean",
    )
    run_tool(cmd)
    found = _peak_position(tmp_path / "img-dirty.fits")
    beam_arcsec = _beam_arcsec(tmp_path / "img-psf.fits", 3.0)
    offset = found.separation(true_pos).arcsec
    print(f"Dec {dec_deg}: offset {offset:.3f} arcsec, beam {beam_arcsec:.1f} arcsec")
    assert offset < 0.1 * beam_arcsec, (offset, beam_arcsec)
