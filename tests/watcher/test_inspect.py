"""inspect_subband_file: facts of valid files, and retryable vs permanent problems."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
import xxhash

from dsa_stream import naming
from dsa_stream.watcher import inspect as inspect_mod
from dsa_stream.watcher.inspect import FileProblem, file_checksum, inspect_subband_file

from .conftest import START, Library


def copy_as(src: Path, dest_dir: Path, name: str | None = None) -> Path:
    dest = dest_dir / (name or src.name)
    shutil.copyfile(src, dest)
    return dest


def modified(src: Path, dest_dir: Path, edit: Callable[[h5py.File], None]) -> Path:
    dest = copy_as(src, dest_dir)
    with h5py.File(dest, "r+") as h5:
        edit(h5)
    return dest


def problem(path: Path, **kw: object) -> FileProblem:
    with pytest.raises(FileProblem) as info:
        inspect_subband_file(path, **kw)  # type: ignore[arg-type]
    return info.value


def renamed(path: Path, shift_s: float = 0.0, sb: int | None = None) -> str:
    name = naming.parse_subband_filename(path.name)
    return naming.format_subband_filename(
        naming.SubbandName(
            name.timestamp + timedelta(seconds=shift_s), name.subband if sb is None else sb
        )
    )


# -- valid files ------------------------------------------------------------------------


def test_valid_group_facts_come_from_the_header(library: Library) -> None:
    infos = [inspect_subband_file(library.path(0, sb)) for sb in range(16)]
    assert [i.subband for i in infos] == list(range(16))
    assert {i.group_key for i in infos} == {library.keys[0]}
    assert {i.obs_start for i in infos} == {infos[0].obs_start}
    assert abs((infos[0].obs_start - START).total_seconds()) < 1.0
    # jittered names, one observation
    assert len({i.filename_time for i in infos}) > 1
    assert all(0 <= (i.filename_time - i.obs_start).total_seconds() < 6 for i in infos)
    first = infos[0]
    st = os.stat(library.path(0, 0))
    assert (first.size, first.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert first.checksum == xxhash.xxh64(library.path(0, 0).read_bytes()).hexdigest()
    assert (first.n_times, first.n_baselines, first.n_freqs) == (24, 10, 1)
    assert first.dec_deg == pytest.approx(54.5734, abs=1e-3)
    assert all(a.freq_min_hz > b.freq_max_hz for a, b in zip(infos, infos[1:], strict=False))
    other = inspect_subband_file(library.path(1, 0))
    assert other.group_key == library.keys[1] != first.group_key


def test_checksum_can_be_skipped(library: Library) -> None:
    assert inspect_subband_file(library.path(0, 3), checksum=False).checksum is None
    assert file_checksum(library.path(0, 3)) == inspect_subband_file(library.path(0, 3)).checksum


def test_name_time_within_tolerance_keeps_the_header_group(
    library: Library, tmp_path: Path
) -> None:
    src = library.path(0, 5)
    late = copy_as(src, tmp_path, renamed(src, 40))
    info = inspect_subband_file(late, filename_tolerance_s=60)
    assert info.group_key == library.keys[0]
    err = problem(late, filename_tolerance_s=10)
    assert err.permanent and "tolerance 10 s" in str(err)


# -- permanent problems -----------------------------------------------------------------


def test_names_that_are_not_subband_names_are_permanent(library: Library, tmp_path: Path) -> None:
    for name in ("garbage.hdf5", "2025-10-02T00:00:00_sb3.hdf5", "2025-13-02T00:00:00_sb03.hdf5"):
        err = problem(copy_as(library.path(0, 3), tmp_path, name))
        assert err.permanent and not err.retryable


def test_subband_name_must_match_the_frequencies(library: Library, tmp_path: Path) -> None:
    src = library.path(0, 3)
    err = problem(copy_as(src, tmp_path, renamed(src, sb=4)))
    assert err.permanent and "name says sb04" in str(err) and "subband 3" in str(err)
    err = problem(copy_as(src, tmp_path, renamed(src, sb=16)))
    assert err.permanent


def test_name_time_beyond_tolerance_is_permanent(library: Library, tmp_path: Path) -> None:
    src = library.path(0, 7)
    err = problem(copy_as(src, tmp_path, renamed(src, -300)))
    assert err.permanent and "tolerance 60 s" in str(err)


def _set(name: str, value: object) -> Callable[[h5py.File], None]:
    def edit(h5: h5py.File) -> None:
        h5[name][...] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("Header/time_array", 1.0e3), "invalid Julian dates"),
        (_set("Header/time_array", np.nan), "invalid Julian dates"),
        (_set("Header/Nfreqs", 2), "channels|shape|freq_array"),
        (_set("Header/Npols", 4), "shape"),
        (_set("Header/Nbls", 0), "unexpected dimensions"),
        (_set("Header/extra_keywords/phase_center_dec", 7.0), "declination"),
        (lambda h5: h5["Header/extra_keywords"].__delitem__("phase_center_dec"), "missing"),
    ],
    ids=["time-garbage", "time-nan", "nfreqs", "npols", "nbls", "dec-range", "dec-missing"],
)
def test_inconsistent_headers_are_permanent(
    library: Library, tmp_path: Path, edit: Callable[[h5py.File], None], match: str
) -> None:
    err = problem(modified(library.path(0, 2), tmp_path, edit))
    assert err.permanent, err
    assert any(m in str(err) for m in match.split("|")), err


def test_more_integrations_than_expected_is_permanent(library: Library) -> None:
    err = problem(library.path(0, 1), expected_times=12)
    assert err.permanent and "unexpected dimensions" in str(err)


def test_repeated_times_are_permanent(library: Library, tmp_path: Path) -> None:
    def edit(h5: h5py.File) -> None:
        t = h5["Header/time_array"][:]
        t[t == t.max()] = t.min()
        h5["Header/time_array"][...] = t

    err = problem(modified(library.path(0, 1), tmp_path, edit))
    assert err.permanent and "distinct times" in str(err)


# -- retryable problems -----------------------------------------------------------------


def _keep_integrations(n: int) -> Callable[[h5py.File], None]:
    def edit(h5: h5py.File) -> None:
        nbls = int(h5["Header/Nbls"][()])
        rows = n * nbls
        header = ("time_array", "integration_time", "ant_1_array", "ant_2_array", "uvw_array")
        for grp, names in (("Header", header), ("Data", ("visdata", "flags", "nsamples"))):
            for name in names:
                h5[grp][name].resize(rows, axis=0)
        h5["Header/Nblts"][()] = rows
        h5["Header/Ntimes"][()] = n

    return edit


def _zero_last(name: str) -> Callable[[h5py.File], None]:
    def edit(h5: h5py.File) -> None:
        nbls = int(h5["Header/Nbls"][()])
        ds = h5[name]
        ds[ds.shape[0] - nbls :] = 0

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_keep_integrations(12), "incomplete: 12 of 24"),
        (_zero_last("Data/visdata"), "only zeros"),
        (_zero_last("Header/time_array"), "time_array still holds zeros"),
        (lambda h5: h5.__delitem__("Header"), "not UVH5"),
        (lambda h5: h5["Data"].__delitem__("flags"), "Data/flags is missing"),
        (lambda h5: h5["Header"].__delitem__("Ntimes"), "Ntimes is missing"),
    ],
    ids=["partial", "zero-tail", "time-tail", "no-header", "no-flags", "no-ntimes"],
)
def test_unfinished_files_are_retryable(
    library: Library, tmp_path: Path, edit: Callable[[h5py.File], None], match: str
) -> None:
    err = problem(modified(library.path(0, 9), tmp_path, edit))
    assert err.retryable and not err.permanent, err
    assert match in str(err)


def test_truncated_at_random_offsets_is_retryable(library: Library, tmp_path: Path) -> None:
    data = library.path(0, 4).read_bytes()
    rng = random.Random(4)
    dest = tmp_path / library.path(0, 4).name
    for cut in sorted(rng.sample(range(len(data)), 25)) + [0, 1, len(data) - 1]:
        dest.write_bytes(data[:cut])
        err = problem(dest)
        assert err.retryable, (cut, err)


def test_garbage_and_missing_files_are_retryable(library: Library, tmp_path: Path) -> None:
    dest = tmp_path / library.path(0, 4).name
    dest.write_bytes(random.Random(1).randbytes(50_000))
    assert "cannot open as HDF5" in str(problem(dest))
    dest.unlink()
    err = problem(dest)
    assert err.retryable and "disappeared" in str(err)


def test_a_file_changing_during_inspection_is_retryable(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = copy_as(library.path(0, 6), tmp_path)

    def growing_checksum(path: Path) -> str:
        with open(path, "ab") as fh:
            fh.write(b"\0" * 10)
        return "x"

    monkeypatch.setattr(inspect_mod, "file_checksum", growing_checksum)
    err = problem(dest)
    assert err.retryable and "changed while being inspected" in str(err)


def test_damaged_files_only_ever_raise_file_problem(library: Library, tmp_path: Path) -> None:
    """Bit flips and zeroed ranges (mostly in the metadata at the start): HDF5 raises
    OSError, RuntimeError, KeyError...; inspection turns every one into a FileProblem."""
    data = library.path(0, 8).read_bytes()
    rng = random.Random(8)
    dest = tmp_path / library.path(0, 8).name
    kinds = {"ok": 0, "retryable": 0, "permanent": 0}
    for _ in range(150):
        buf = bytearray(data)
        if rng.random() < 0.6:
            for _ in range(rng.randint(1, 6)):
                buf[rng.randrange(8192)] ^= 1 << rng.randrange(8)
        else:
            off, n = rng.randrange(len(buf)), rng.randint(1, 4096)
            buf[off : off + n] = bytes(len(buf[off : off + n]))
        dest.write_bytes(bytes(buf))
        try:
            inspect_subband_file(dest)
            kinds["ok"] += 1
        except FileProblem as err:
            kinds["retryable" if err.retryable else "permanent"] += 1
    assert kinds["retryable"] > 0 and sum(kinds.values()) == 150


def test_reading_never_locks_out_the_writer(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inspection opens without HDF5's file lock: a writer holding the file open does
    not make it fail, and a writer can (re)open the file while it is being inspected."""
    dest = copy_as(library.path(0, 10), tmp_path)
    code = (
        "import sys, h5py\n"
        "f = h5py.File(sys.argv[1], 'r+')\n"
        "print('open', flush=True)\n"
        "sys.stdin.read()\n"
        "f.close()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(dest)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "open"
        assert inspect_subband_file(dest).subband == 10
        writer.stdin.close()
        assert writer.wait(timeout=30) == 0

    original = inspect_mod._read_file
    opened_by_writer: list[int] = []

    def read_while_a_writer_opens(fh: h5py.File, expected: int) -> object:
        reopen = "import sys, h5py; h5py.File(sys.argv[1], 'r+').close()"
        rc = subprocess.run(
            [sys.executable, "-c", reopen, str(dest)], capture_output=True, timeout=60
        )
        opened_by_writer.append(rc.returncode)
        return original(fh, expected)

    monkeypatch.setattr(inspect_mod, "_read_file", read_while_a_writer_opens)
    err = problem(dest)  # the writer got in (and HDF5 rewrote its superblock on close)
    assert opened_by_writer == [0]
    assert err.retryable and "changed while being inspected" in str(err)
