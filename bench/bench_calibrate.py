"""Benchmark the calibration stage at full DSA-110 size: solve, then apply two ways.

Simulates two 96-antenna groups 25 min apart (16 x 48 channels, 24 integrations, the
default sky, gains, bandpasses and noise; 3C147 transits in the middle of group 0,
~45 s per group), then runs, each step in its own process under ``/usr/bin/time -v``:

* ``solve``: :func:`dsa_stream.calibration.solve.solve_group` on the calibrator group
  (conversion at the calibrator, MODEL_DATA, flagging, the CASA chain G0 -> B -> G in
  a child process, QA, plots);
* ``convert + applycal``: the target group converted (midpoint, in-process checks)
  then :func:`~dsa_stream.calibration.apply.apply_to_ms` (CASA applycal, child process);
* ``convert on the fly``: the target group converted with the tables applied inside
  the conversion (:func:`~dsa_stream.calibration.apply.convert_calibrated`).

Wall time and peak RSS come from ``time -v`` (the peak of any one process of the
tree, CASA children included); step times from the stage results. The table and the
command are written into ``docs/benchmarks.md`` under ``## Calibration``.

Usage (from the repository root):

    .venv/bin/python bench/bench_calibrate.py [--data DIR] [--keep] [--no-docs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from dsa_stream import __version__

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Calibration"
TIME = "/usr/bin/time"

SOLVE = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import dsa_stream.casa_env
    from pathlib import Path
    from dsa_stream.calibration.solve import solve_group
    files, out = json.loads(sys.argv[1])
    r = solve_group([Path(f) for f in files], Path(out))
    doc = {
        "timings": r.timings_s, "run_s": time.perf_counter() - t0, "passed": r.passed,
        "refant": r.refant, "set": r.set_name,
        "tables": [str(r.table("bandpass").path), str(r.table("gain").path)],
        "qa": r.qa.model_dump(mode="json", exclude={"antennas"}),
        "flagged": r.flagging.final_fraction, "model": r.model.model_dump(mode="json"),
    }
    print("RESULT " + json.dumps(doc))
    """
)

APPLYCAL = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import dsa_stream.casa_env
    from pathlib import Path
    from dsa_stream.calibration.apply import apply_to_ms
    from dsa_stream.conversion import ConvertOptions, ValidationOptions, convert_group
    files, out, tables = json.loads(sys.argv[1])
    opts = ConvertOptions(validation=ValidationOptions(casatools="off", casacore35="off"))
    s = time.perf_counter()
    convert_group(files, Path(out), opts)
    t = {"convert": time.perf_counter() - s}
    s = time.perf_counter()
    a = apply_to_ms(Path(out), [Path(p) for p in tables])
    t["applycal (child, incl. CASA start)"] = time.perf_counter() - s
    t["applycal task"] = a.timings_s["applycal"]
    print("RESULT " + json.dumps({"timings": t, "run_s": time.perf_counter() - t0}))
    """
)

ON_THE_FLY = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import dsa_stream.casa_env
    from pathlib import Path
    from dsa_stream.calibration.apply import convert_calibrated
    from dsa_stream.conversion import ConvertOptions, ValidationOptions
    files, out, tables = json.loads(sys.argv[1])
    opts = ConvertOptions(validation=ValidationOptions(casatools="off", casacore35="off"))
    s = time.perf_counter()
    convert_calibrated(files, Path(out), [Path(p) for p in tables], opts)
    t = {"convert with tables applied": time.perf_counter() - s}
    print("RESULT " + json.dumps({"timings": t, "run_s": time.perf_counter() - t0}))
    """
)


def _timed(script: str, payload: list[object]) -> dict[str, object]:
    """Run a script under /usr/bin/time -v; wall (s), peak RSS (MiB) and its RESULT line."""
    argv = [TIME, "-v", sys.executable, "-c", script, json.dumps(payload)]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    assert wall and rss, proc.stderr
    h, m, s = (float(x) if x else 0.0 for x in wall.groups())
    result = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    return {"wall_s": h * 3600 + m * 60 + s, "rss_mib": int(rss.group(1)) / 1024.0, **result}


def simulate(data: Path) -> tuple[list[str], list[str]]:
    """The calibrator group and the target group (simulated once, reused with --data)."""
    from dsa_stream.simulate import SimulationOptions, load_truth, simulate_night

    truth_path = data / "truth.json"
    if not truth_path.exists():
        opts = SimulationOptions(
            out_dir=data,
            n_groups=2,
            antennas=96,
            seed=1,
            calibrator="3C147",
            calibrator_group=0,
            gap_minutes=20.0,
        )
        simulate_night(opts)
    truth = load_truth(truth_path)
    return tuple(  # type: ignore[return-value]
        [str(data / f) for f in truth.groups[k].files] for k in (0, 1)
    )


def run(data: Path, work: Path) -> dict[str, dict[str, object]]:
    cal, target = simulate(data)
    rows: dict[str, dict[str, object]] = {"load": {"before": os.getloadavg()[0]}}
    print("solve ...", flush=True)
    rows["solve"] = _timed(SOLVE, [cal, str(work / "sets")])
    tables = rows["solve"]["tables"]
    print(f"  {rows['solve']['wall_s']:.1f} s, {rows['solve']['rss_mib']:.0f} MiB", flush=True)
    for name, script, out in (
        ("convert + applycal", APPLYCAL, work / "target_applycal.ms"),
        ("convert on the fly", ON_THE_FLY, work / "target_otf.ms"),
    ):
        print(f"{name} ...", flush=True)
        rows[name] = _timed(script, [target, str(out), tables])
        print(f"  {rows[name]['wall_s']:.1f} s, {rows[name]['rss_mib']:.0f} MiB", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    rows["load"]["after"] = os.getloadavg()[0]
    return rows


def _steps(row: dict[str, object]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in row["timings"].items())  # type: ignore[union-attr]


def render(rows: dict[str, dict[str, object]], command: str) -> str:
    load = rows.pop("load")
    solve = rows["solve"]
    qa = solve["qa"]
    ac, otf = rows["convert + applycal"], rows["convert on the fly"]
    ratio = float(ac["wall_s"]) / float(otf["wall_s"])  # type: ignore[arg-type]
    lines = [
        SECTION,
        "",
        "Two full-size groups 25 min apart: 96 antennas (4656 baselines with autos), 24",
        "integrations, 16 subbands x 48 channels, 2 polarizations, the default sky (seed 1),",
        "gains, bandpasses and noise; 3C147 transits in the middle of the first. Each step",
        "runs in its own process under `/usr/bin/time -v` (peak RSS: the largest process of",
        "the tree, CASA children included).",
        "",
        f"Command (run on {dt.date.today().isoformat()}, dsa-stream {__version__}, "
        f"Python {platform.python_version()}, 2 cores shared with other work; 1-min load "
        f"average {load['before']:.1f} before, {load['after']:.1f} after):",
        "",
        "```",
        command,
        "```",
        "",
        "| step | wall (process) | peak RSS | steps (s) |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['wall_s']:.1f} s | {float(r['rss_mib']) / 1024:.2f} GiB | "  # type: ignore[arg-type]
            f"{_steps(r)} |"
        )
    lines += [
        "",
        f"Solve: set {solve['set']}, QA {'passed' if solve['passed'] else 'FAILED'}, reference "
        f"antenna {solve['refant']}, {float(solve['flagged']):.2%} of the cross-correlations "  # type: ignore[arg-type]
        f"flagged, median SNR bandpass {qa['bandpass_snr_median']:.0f} / gains "  # type: ignore[index]
        f"{qa['gain_snr_median']:.0f}, {qa['n_antennas_solved']} antennas solved.",  # type: ignore[index]
        "",
        f"Target group: convert + applycal takes {ratio:.2f} x the wall time of the conversion",
        "with the tables applied on the fly (which also writes no CORRECTED_DATA column,",
        "1.37 GB less per group). The solve runs once per calibrator transit, off the",
        "per-group critical path; the feasibility study measured 75-94 s for the CASA chain",
        "alone on this machine (setjy virtual model, no flagging, QA or plots).",
        "",
    ]
    return "\n".join(lines)


def write_docs(section: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="reuse/keep the simulated groups here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-calibrate-"))
    try:
        data = args.data or tmp / "data"
        data.mkdir(parents=True, exist_ok=True)
        rows = run(data, tmp)
        section = render(rows, ".venv/bin/python bench/bench_calibrate.py")
        print(section)
        (tmp / "results.json").write_text(json.dumps(rows, indent=1, default=str))
        if not args.no_docs:
            write_docs(section)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
