"""Input checks: every corrupt or inconsistent group fails with a clear InputFileError."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa_stream.conversion import convert_group, read_group
from dsa_stream.exceptions import InputFileError

from .conftest import fast_options


def _edit(path: Path, name: str, func) -> None:
    with h5py.File(path, "r+") as h5:
        value = h5[name][()]
        del h5[name]
        h5[name] = func(value)


def test_good_group_sorted_by_frequency(small_group):
    files = list(reversed(small_group[0]))
    group = read_group(files)
    assert group.subbands == tuple(range(16))
    assert group.missing == ()
    band = group.full_band_hz()
    assert np.all(np.diff(band) > 0) and band.size == 64


def test_missing_file(small_group, tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_group([*small_group[0][:3], tmp_path / "2025-10-02T00:00:00_sb05.hdf5"])


def test_not_hdf5(small_group, tmp_path):
    bad = tmp_path / "2025-10-02T00:00:00_sb03.hdf5"
    bad.write_text("not hdf5")
    with pytest.raises(InputFileError, match="not a readable HDF5"):
        read_group([bad])


def test_no_files():
    with pytest.raises(InputFileError, match="no input files"):
        read_group([])


CASES = {
    "header key missing": (
        lambda f: _drop(f, "Header/ant_1_array"),
        "lacks ant_1_array",
    ),
    "no Dec keyword": (
        lambda f: _drop(f, "Header/extra_keywords/phase_center_dec"),
        "phase_center_dec",
    ),
    "time differs": (
        lambda f: _edit(f, "Header/time_array", lambda t: t + 1e-4),
        "time_array differs",
    ),
    "Dec differs": (
        lambda f: _edit(f, "Header/extra_keywords/phase_center_dec", lambda d: d + 1e-3),
        "pointing Dec",
    ),
    "antenna positions differ": (
        lambda f: _edit(f, "Header/antenna_positions", lambda p: p + 0.5),
        "antenna numbers or positions differ",
    ),
    "baselines differ": (
        lambda f: _edit(f, "Header/ant_2_array", lambda a: np.roll(a, 1)),
        "baselines",
    ),
    "truncated data": (
        lambda f: _truncate(f),
        "truncated or inconsistent",
    ),
    "polarizations differ": (
        lambda f: _edit(f, "Header/polarization_array", lambda p: p[::-1].copy()),
        "polarizations",
    ),
}


def _drop(path: Path, name: str) -> None:
    with h5py.File(path, "r+") as h5:
        del h5[name]


def _truncate(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        n = h5["Data/visdata"].shape[0]
        h5["Data/visdata"].resize(n - 10, axis=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupt_input(group_copy, case, tmp_path):
    files = group_copy()
    corrupt, message = CASES[case]
    corrupt(files[5])
    with pytest.raises(InputFileError, match=message):
        convert_group(files, tmp_path / "x.ms", fast_options())
    assert not (tmp_path / "x.ms").exists()


def test_duplicate_subband(group_copy):
    files = group_copy()
    dup = files[2].with_name("2025-10-02T00:00:09_sb99.hdf5")
    dup.write_bytes(files[2].read_bytes())
    with pytest.raises(InputFileError, match="are both subband"):
        read_group([*files, dup.rename(dup.with_name(dup.name.replace("sb99", "xx")))])


def test_name_disagrees_with_frequencies(group_copy):
    files = group_copy()
    sb = read_group([files[0]]).subbands[0]
    wrong = files[0].with_name(files[0].name[:-7] + f"{(sb + 1) % 16:02d}.hdf5")
    files[0].rename(wrong)
    with pytest.raises(InputFileError, match="file name says"):
        read_group([wrong])


def test_same_file_twice(small_group):
    with pytest.raises(InputFileError, match="twice"):
        read_group([small_group[0][0], small_group[0][0]])
