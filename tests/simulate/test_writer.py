"""Correlator-like writing: rename never exposes partial files, slow files grow, pacing, stop."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import h5py
import pytest
from pyuvdata import UVData

from dsa_stream import naming
from dsa_stream.simulate import SimulationOptions, WriterOptions, load_truth, simulate_night
from dsa_stream.simulate import correlator as correlator_mod


def _opts(tmp_path, **writer):
    return SimulationOptions(
        out_dir=tmp_path,
        antennas=4,
        channels_per_subband=1,
        seed=3,
        dec_deg=30.0,
        writer=WriterOptions(**writer),
    )


def _ntimes_in_subprocess(path) -> str:
    """Read Header/Ntimes in another process (no HDF5 state shared with the writer)."""
    code = (
        "import sys, h5py\n"
        "try:\n"
        "    f = h5py.File(sys.argv[1], 'r'); print(int(f['Header/Ntimes'][()])); f.close()\n"
        "except Exception as e:\n"
        "    print('unreadable')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip()


def test_rename_mode_never_shows_a_partial_final_file(tmp_path, monkeypatch):
    seen_final_during_write = []
    real_write = correlator_mod.write_subband_file

    def checking_write(path, content):
        final = path.with_name(path.name[1:].removesuffix(".tmp"))
        assert path.name.startswith(".") and path.name.endswith(".tmp")
        assert naming.is_temporary_filename(path.name)
        seen_final_during_write.append(final.exists())
        return real_write(path, content)

    monkeypatch.setattr(correlator_mod, "write_subband_file", checking_write)
    complete = []

    def on_file(done):
        with h5py.File(done.path, "r") as h5:  # complete the moment it has its name
            complete.append(int(h5["Header/Ntimes"][()]))

    result = simulate_night(_opts(tmp_path, mode="rename"), on_file=on_file)
    assert result.n_files == 16 and complete == [24] * 16
    assert seen_final_during_write == [False] * 16
    assert not list(tmp_path.glob(".*.tmp"))


def test_rename_mode_polled_from_another_thread(tmp_path):
    """A poller listing the directory only ever finds complete files under final names."""
    opts = _opts(tmp_path, mode="rename")
    done = threading.Event()
    problems: list[str] = []

    def poll():
        while not done.is_set():
            for p in tmp_path.glob("*_sb*.hdf5"):
                try:
                    with h5py.File(p, "r") as h5:
                        if int(h5["Header/Ntimes"][()]) != 24:
                            problems.append(p.name)
                except OSError:
                    problems.append(f"unreadable {p.name}")
            time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        simulate_night(opts)
    finally:
        done.set()
        poller.join()
    assert problems == []


def test_slow_mode_files_grow_and_end_valid(tmp_path):
    opts = _opts(tmp_path, mode="slow", write_seconds=4.0, slow_chunks=4)
    runner = threading.Thread(target=simulate_night, args=(opts,))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        files = []
        while not files and time.monotonic() < deadline:
            files = sorted(tmp_path.glob("*_sb00.hdf5"))
            time.sleep(0.01)
        assert files, "slow mode created no file"
        time.sleep(0.3)
        during = _ntimes_in_subprocess(files[0])
        sizes = [files[0].stat().st_size]
        time.sleep(1.2)
        sizes.append(files[0].stat().st_size)
    finally:
        runner.join()
    assert during == "unreadable" or int(during) < 24
    assert sizes[1] > sizes[0]
    assert _ntimes_in_subprocess(files[0]) == "24"
    truth = load_truth(tmp_path / "truth.json")
    for name in truth.groups[0].files:
        uv = UVData.from_file(tmp_path / name, file_type="uvh5", run_check=False)
        assert uv.Ntimes == 24 and uv.Nblts == 24 * 10


def test_cadence_paces_observations(tmp_path):
    opts = _opts(tmp_path, cadence_s=1.0).model_copy(update={"n_groups": 2, "subbands": (0,)})
    stamps = []
    result = simulate_night(
        opts, on_file=lambda f: stamps.append((f.group_index, time.monotonic()))
    )
    assert result.n_files == 2
    (g0, t0), (g1, t1) = stamps
    assert (g0, g1) == (0, 1)
    assert t1 - t0 >= 0.9


def test_stop_event_ends_the_run(tmp_path):
    stop = threading.Event()
    opts = _opts(tmp_path, cadence_s=30.0).model_copy(update={"n_groups": 3})

    def on_file(done):
        if done.subband == 3:
            stop.set()

    result = simulate_night(opts, stop_event=stop, on_file=on_file)
    assert result.stopped
    assert result.n_files == 4
    assert len(result.groups) == 1


def test_existing_outputs_are_not_overwritten(tmp_path):
    opts = _opts(tmp_path).model_copy(update={"subbands": (0,)})
    simulate_night(opts)
    from dsa_stream.exceptions import SimulationError

    with pytest.raises(SimulationError, match="already exist"):
        simulate_night(opts)
    again = simulate_night(opts.model_copy(update={"overwrite": True}))
    assert again.n_files == 1
