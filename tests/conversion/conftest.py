"""Tiny simulated groups and converted MSs shared by the conversion tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import dsa_stream.casa_env  # noqa: F401  (astropy/CASA offline first)
from dsa_stream.conversion.options import ConvertOptions, ValidationOptions
from dsa_stream.simulate import (
    CorruptionOptions,
    SimulationOptions,
    SimulationTruth,
    SkyOptions,
    load_truth,
    simulate_night,
)

#: In-process checks only (the casatools / casacore 3.5 checks have their own tests).
FAST_CHECKS = ValidationOptions(casatools="off", casacore35="off")


def fast_options(**kw: object) -> ConvertOptions:
    """ConvertOptions without the child-process checks and without input checksums."""
    kw.setdefault("validation", FAST_CHECKS)
    kw.setdefault("checksum_inputs", False)
    return ConvertOptions(**kw)  # type: ignore[arg-type]


def simulate(out: Path, **kw: object) -> tuple[list[Path], SimulationTruth]:
    """One simulated group; returns its files (sorted by name) and truth."""
    opts = SimulationOptions(out_dir=out, n_groups=1, **kw)  # type: ignore[arg-type]
    result = simulate_night(opts)
    files = sorted(out / name for name in result.groups[0].files)
    return files, load_truth(result.truth_path)


@pytest.fixture(scope="session")
def small_group(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], SimulationTruth]:
    """8 antennas, 4 channels per subband, Dec 54.6, random sky, gains, noise."""
    return simulate(
        tmp_path_factory.mktemp("small"),
        antennas=8,
        channels_per_subband=4,
        seed=7,
        dec_deg=54.6,
        sky=SkyOptions(density_per_deg2=2.0),
        corruption=CorruptionOptions(noise=True),
    )


@pytest.fixture
def group_copy(
    small_group: tuple[list[Path], SimulationTruth], tmp_path: Path
) -> Callable[[], list[Path]]:
    """Make a fresh copy of the small group's files (to corrupt) in tmp_path."""

    def make() -> list[Path]:
        dest = tmp_path / f"copy{len(list(tmp_path.glob('copy*')))}"
        dest.mkdir()
        return [Path(shutil.copy2(f, dest / f.name)) for f in small_group[0]]

    return make


@pytest.fixture(scope="session")
def small_ms(
    small_group: tuple[list[Path], SimulationTruth], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, object]:
    """The small group converted in midpoint mode (do not modify: copy it)."""
    from dsa_stream.conversion import convert_group

    out = tmp_path_factory.mktemp("small_ms") / "small.ms"
    result = convert_group(small_group[0], out, fast_options())
    return out, result
