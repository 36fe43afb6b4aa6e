"""End to end on a simulated night: the worker's calibrate stage solves, registers, waits, applies.

Three groups 25 min apart; 3C147 transits in group 1. The registry (SQLite) is fed
as the watcher and the convert stage would: files registered, each group converted
(mode ``fields``, so the truth model can be evaluated row by row) and its MS product
committed with a ``calibrate`` job. The worker then runs the calibrate jobs in
observation-time order: group 0 (before the transit) waits, group 1 solves and
registers the set, which releases group 0, and every group gets applycal.

Accuracy (the numbers are printed; see docs/calibration.md):

* the solved total gains B x G against the injected G = g B (conjugated, CASA's
  convention), referenced to the reference antenna: phase within 2 deg and amplitude
  within 2% for every antenna, polarization and channel;
* the fluxes of the bright target sources, fitted in the calibrated visibilities
  against the simulator's truth model (tests/calibration/truthfit.py), within 2%, for
  applycal and for on-the-fly calibration in the conversion.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from casacore import tables
from sqlalchemy import select

from dsa_stream import naming
from dsa_stream.calibration.apply import convert_calibrated, read_provenance
from dsa_stream.calibration.solve import read_result
from dsa_stream.pipeline.calibration import CALIBRATED
from dsa_stream.registry.models import calibrations, groups, jobs, product_lineage

from .conftest import FIELDS, Night, Run
from .truthfit import fit_amplitudes, gain_errors

#: Sources fitted to 2%: the explicit targets (apparent flux >= 1.5 Jy in their group).
TARGETS = {0: ("target0a", "target0b"), 2: ("target2a", "target2b")}


@pytest.mark.casa
def test_groups_wait_then_are_calibrated_with_the_registered_set(run: Run) -> None:
    with run.store.engine.connect() as conn:
        state = {r.group_key: (r.state, r.stage, r.reason) for r in conn.execute(select(groups))}
        cal_jobs = conn.execute(
            select(jobs.c.dedupe_key, jobs.c.state)
            .where(jobs.c.kind == "calibrate")
            .order_by(jobs.c.id)
        ).all()
        image = conn.execute(
            select(jobs.c.dedupe_key, jobs.c.payload)
            .where(jobs.c.kind == "image")
            .order_by(jobs.c.id)
        ).all()
        cals = conn.execute(select(calibrations)).all()
        lineage = conn.execute(select(product_lineage)).all()
    key0, key1, key2 = run.keys
    set_name = f"{key1}_3C147"
    assert {v[:2] for v in state.values()} == {("processing", CALIBRATED)}
    assert set_name in state[key0][2] and "nearest transit" in state[key2][2]
    assert [j.dedupe_key for j in cal_jobs] == [
        f"calibrate:{key0}",
        f"calibrate:{key1}",
        f"calibrate:{key2}",
        f"calibrate:{key0}:{set_name}:v1",
    ]
    assert all(j.state == "succeeded" for j in cal_jobs)
    # claim order is observation time: the released group 0 goes before group 2
    assert [i.dedupe_key for i in image] == [f"image:{k}" for k in (key1, key0, key2)]
    for i in image:
        assert i.payload["calibrated"] is True and i.payload["data_column"] == "CORRECTED_DATA"
        assert i.payload["calibration_set"] == set_name and i.payload["ms"]["root_id"] == "products"
    assert sorted(c.status for c in cals) == ["valid", "valid"]
    assert sum(1 for edge in lineage if edge.relation == "calibration") == 6  # 2 tables x 3 MS
    for key in run.keys:
        record = read_provenance(run.ms[key])
        assert record is not None and record["set_name"] == set_name
        assert [Path(t).name for t in record["tables"]] == [f"{set_name}.B", f"{set_name}.G"]


@pytest.mark.casa
def test_solved_gains_match_the_injected_ones(run: Run, night: Night) -> None:
    set_dir = run.settings.paths.resolve("products") / "caltables" / f"{run.keys[1]}_3C147"
    result = read_result(set_dir / naming.CALSET_RECORD_FILENAME)
    assert result.passed and result.calibrator.name == "3C147"
    assert result.model.model_min_jy > 0 and 0.9 < result.model.response_min < 1.0
    phase_deg, amp_frac, refant = gain_errors(
        result.table("bandpass").path, result.table("gain").path, night.truth
    )
    print(
        f"gains vs truth: max phase error {phase_deg:.3f} deg, max amplitude error {amp_frac:.4%}"
    )
    assert phase_deg < 2.0 and amp_frac < 0.02
    assert result.refant == str(refant + 1)  # names are station numbers, index = station - 1
    assert result.refant == result.refant_candidates[0]
    for plot in result.plots:
        data = plot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.casa
@pytest.mark.parametrize("k", [0, 2])
def test_target_fluxes_are_recovered_after_applycal(run: Run, night: Night, k: int) -> None:
    ms = run.ms[run.keys[k]]
    fitted = fit_amplitudes(ms, "CORRECTED_DATA", night.opts, night.truth, k)
    raw = fit_amplitudes(ms, "DATA", night.opts, night.truth, k)
    for name in TARGETS[k]:
        amp, response = fitted[name]
        print(f"group {k} {name}: response {response:.3f}, fitted flux ratio {amp:.4f}")
        assert abs(amp - 1.0) < 0.02
        assert abs(raw[name][0] - 1.0) > 0.5  # the uncalibrated data are far off


@pytest.mark.casa
def test_on_the_fly_calibration_recovers_the_same_fluxes(
    run: Run, night: Night, tmp_path: Path
) -> None:
    set_name = f"{run.keys[1]}_3C147"
    set_dir = run.settings.paths.resolve("products") / "caltables" / set_name
    tabs = [set_dir / f"{set_name}.G", set_dir / f"{set_name}.B"]
    applied = convert_calibrated(
        night.files(2), tmp_path / "otf.ms", tabs, FIELDS, set_name=set_name
    )
    assert applied.method == "on-the-fly" and [p.suffix for p in applied.tables] == [".B", ".G"]
    fitted = fit_amplitudes(applied.ms_path, "DATA", night.opts, night.truth, 2)
    for name in TARGETS[2]:
        print(f"on the fly, group 2 {name}: fitted flux ratio {fitted[name][0]:.4f}")
        assert abs(fitted[name][0] - 1.0) < 0.02
    with (
        tables.table(str(applied.ms_path), ack=False) as a,
        tables.table(str(run.ms[run.keys[2]]), ack=False) as b,
    ):
        otf, ref = a.getcol("DATA"), b.getcol("CORRECTED_DATA")
        good = ~b.getcol("FLAG")
    assert np.abs(otf[good] - ref[good]).max() <= 1e-5 * np.abs(ref[good]).max()
    assert read_provenance(applied.ms_path)["method"] == "on-the-fly"
    assert os.path.exists(applied.ms_path / naming.MS_CALIBRATION_RECORD)


@pytest.mark.casa
def test_qa_thresholds_decide_whether_a_set_may_be_applied(run: Run) -> None:
    from dsa_stream.calibration.options import QaThresholds
    from dsa_stream.calibration.qa import assess_tables

    set_dir = run.settings.paths.resolve("products") / "caltables" / f"{run.keys[1]}_3C147"
    result = read_result(set_dir / naming.CALSET_RECORD_FILENAME)
    bp, gn = result.table("bandpass").path, result.table("gain").path
    ants = sorted(result.flagging.antenna_flagged)
    ok = assess_tables(bp, gn, ants, QaThresholds())
    assert ok.passed and ok.n_antennas_solved == ok.n_antennas_data == 16
    assert ok.bandpass_flagged == 0.0 and ok.bandpass_snr_median > 50
    assert ok.phase_noise_deg_median < 2.0 and ok.refant_used == (result.refant,)
    strict = assess_tables(bp, gn, ants, QaThresholds(min_snr=1e6, min_antennas=50))
    assert not strict.passed
    assert any("median SNR" in p for p in strict.problems)
    assert any("antennas solved < 50" in p for p in strict.problems)


@pytest.mark.casa
def test_the_registry_knows_each_groups_files_and_ms(run: Run) -> None:
    from dsa_stream.pipeline.calibration import Roots, group_id_of, group_inputs

    with run.store.engine.connect() as conn:
        for key in run.keys:
            got = group_inputs(conn, Roots.of(run.settings), group_id_of(conn, key))
            assert got.group_key == key and len(got.files) == 16
            assert got.ms_path == run.ms[key] and got.ms_product_id is not None
            assert all(f.exists() for f in got.files)
