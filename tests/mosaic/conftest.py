"""Synthetic drift-scan strips, coadded once per session and shared by the coadd tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dsa_stream.mosaic.api import build_mosaic
from dsa_stream.mosaic.options import ExpectedSource, MosaicOptions, MosaicTile, QAOptions
from dsa_stream.mosaic.results import MosaicResult
from tests.mosaic.synth import TileSpec, strip_sources, strip_specs, write_tile


@dataclass(frozen=True)
class Strip:
    specs: list[TileSpec]
    tiles: list[MosaicTile]
    sources: list[ExpectedSource]
    result: MosaicResult
    out_dir: Path


def make_strip(
    root: Path,
    ra0: float,
    dec: float,
    n: int,
    npix: int,
    *,
    skip: tuple[int, ...] = (),
    options: MosaicOptions | None = None,
    cell_arcsec: float = 8.0,
) -> Strip:
    root.mkdir(parents=True, exist_ok=True)
    specs = strip_specs(ra0, dec, n, npix, cell_arcsec=cell_arcsec, skip=skip, seed=int(dec * 10))
    sources = strip_sources(specs)
    # every other tile as a 4D (RA, Dec, FREQ, STOKES) image, every third without an rms
    tiles = [
        write_tile(root, s, sources, ndim=4 if k % 2 else 2, give_rms=k % 3 != 0)
        for k, s in enumerate(specs)
    ]
    opts = options or MosaicOptions(qa=QAOptions(min_members=len(tiles)))
    result = build_mosaic(
        tiles,
        root / "out" / "mosaic",
        opts,
        config_hash="0123456789abcdef",
        expected_sources=sources,
    )
    return Strip(specs, tiles, sources, result, root / "out")


@pytest.fixture(scope="session")
def strip16(tmp_path_factory: pytest.TempPathFactory) -> Strip:
    """Dec 16: 4 tiles of 720 x 8" (1.6 deg), RA steps 1.24 deg on the sky."""
    return make_strip(tmp_path_factory.mktemp("dec16"), 30.0, 16.0, 4, 720)


@pytest.fixture(scope="session")
def strip55(tmp_path_factory: pytest.TempPathFactory) -> Strip:
    """Dec 54.6: 4 tiles of 480 x 8"."""
    return make_strip(tmp_path_factory.mktemp("dec55"), 150.0, 54.6, 4, 480)


@pytest.fixture(scope="session")
def strip72wrap(tmp_path_factory: pytest.TempPathFactory) -> Strip:
    """Dec 71.6 across RA 0/360: 6 tiles of 320 x 8" from RA 356.5 to 2.96."""
    return make_strip(tmp_path_factory.mktemp("dec72"), 356.5, 71.6, 6, 320)


@pytest.fixture(scope="session")
def gapstrip(tmp_path_factory: pytest.TempPathFactory) -> Strip:
    """Dec 54.6 with the third of five tiles missing: a hole in the coverage."""
    return make_strip(tmp_path_factory.mktemp("gap"), 200.0, 54.6, 5, 480, skip=(2,))


@pytest.fixture(scope="session")
def strip16fine(tmp_path_factory: pytest.TempPathFactory) -> Strip:
    """Dec 16: 4 tiles of 1200 x 4" (6 pixels per BMIN, like the imaging defaults):
    ``resampler: auto`` takes the cubic path."""
    return make_strip(tmp_path_factory.mktemp("dec16fine"), 30.0, 16.0, 4, 1200, cell_arcsec=4.0)
