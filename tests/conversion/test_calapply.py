"""On-the-fly calibration equals CASA applycal on the same B and G tables."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from dsa_stream.conversion import convert_group
from dsa_stream.exceptions import ConversionError
from dsa_stream.simulate import CorruptionOptions, SkyOptions
from dsa_stream.toolrun import call_in_subprocess

from .conftest import fast_options, simulate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """Calibrator group -> MS at the calibrator; CASA solves B, G and applies them."""
    work = tmp_path_factory.mktemp("calapply")
    files, truth = simulate(
        work / "raw",
        antennas=8,
        channels_per_subband=4,
        seed=21,
        calibrator="3C286",
        sky=SkyOptions(density_per_deg2=0.0),
        corruption=CorruptionOptions(noise=True, sefd_jy=300.0),
    )
    cal = truth.calibrator
    centre = (cal.ra_deg, cal.dec_deg)
    opts = fast_options(mode="icrs", phase_center_deg=centre, phase_center_name="3C286")
    raw_ms = work / "cal.ms"
    convert_group(files, raw_ms, opts)
    target = work / "target.ms"
    shutil.copytree(raw_ms, target)
    flux = float(truth.source(cal.name).flux_jy(np.array([1.4e9]))[0])
    tabs = call_in_subprocess(
        "tests.conversion.casa_solve:solve_and_apply",
        {
            "cal_ms": str(raw_ms),
            "target_ms": str(target),
            "prefix": str(work / "cal"),
            "flux_jy": flux,
        },
        timeout_s=600,
        env={"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    return files, opts, target, tabs, work


def _get(ms: Path, col: str) -> np.ndarray:
    with tables.table(str(ms), ack=False) as tb:
        return np.asarray(tb.getcol(col))


@pytest.mark.casa
def test_on_the_fly_equals_applycal(calibrated):
    files, opts, target, tabs, work = calibrated
    ours = work / "otf.ms"
    res = convert_group(
        files, ours, opts.model_copy(update={"apply_tables": (Path(tabs["B"]), Path(tabs["G"]))})
    )
    assert [t.type.split()[0] for t in res.applied_tables] == ["B", "G"]
    assert len(res.applied_tables[1].solution_times_mjd) > 1  # nearest-in-time is exercised
    corrected, casa_flag = _get(target, "CORRECTED_DATA"), _get(target, "FLAG")
    data, flag = _get(ours, "DATA"), _get(ours, "FLAG")
    a1, a2 = _get(ours, "ANTENNA1"), _get(ours, "ANTENNA2")
    cross = a1 != a2
    np.testing.assert_array_equal(flag[cross], casa_flag[cross])
    good = ~flag & cross[:, None, None]
    assert good.sum() > 0.5 * cross.sum() * flag.shape[1] * flag.shape[2]
    raw = _get(target, "DATA")
    assert np.abs(raw[good] - corrected[good]).max() > 0.1 * np.abs(corrected[good]).max()
    diff = np.abs(data[good] - corrected[good])
    print("max diff", diff.max(), "scale", np.abs(corrected[good]).max())
    assert diff.max() <= 1e-5 * np.abs(corrected[good]).max()
    with tables.table(f"{ours}/HISTORY", ack=False) as tb:
        assert any(tabs["B"] in str(m) for m in tb.getcol("MESSAGE"))


@pytest.mark.casa
def test_table_with_other_channels_is_refused(calibrated, tmp_path):
    files, opts, _target, tabs, _work = calibrated
    bad = tmp_path / "bad.B"
    shutil.copytree(tabs["B"], bad)
    with tables.table(f"{bad}/SPECTRAL_WINDOW", ack=False, readonly=False) as tb:
        tb.putcell("CHAN_FREQ", 0, tb.getcell("CHAN_FREQ", 0) + 1e6)
    with pytest.raises(ConversionError, match="do not match"):
        convert_group(files, tmp_path / "x.ms", opts.model_copy(update={"apply_tables": (bad,)}))
    assert not (tmp_path / "x.ms").exists()


@pytest.mark.casa
def test_changed_table_is_not_adopted(calibrated, tmp_path):
    files, opts, _target, tabs, _work = calibrated
    g = tmp_path / "copy.G"
    shutil.copytree(tabs["G"], g)
    apply = opts.model_copy(update={"apply_tables": (Path(tabs["B"]), g)})
    out = tmp_path / "otf.ms"
    convert_group(files, out, apply)
    assert convert_group(files, out, apply).adopted
    with tables.table(str(g), ack=False, readonly=False) as tb:
        tb.putcol("CPARAM", tb.getcol("CPARAM") * 1.1)
    redo = convert_group(files, out, apply)
    assert not redo.adopted and "inputs-changed" in redo.quarantined.name
