"""Benchmark the imaging stage at full DSA-110 size: WSClean and tclean, default settings.

Simulates one 96-antenna group (16 x 48 channels, 24 integrations, the default sky with
seed 1 and thermal noise; no gains or bandpasses, i.e. the data as a perfect calibration
would deliver them; ~45 s), converts it with our converter (midpoint phasing, in-process
checks; ~25 s), then images that same MS with each backend at the default
:class:`~dsa_stream.imaging.ImagingOptions`, each run in its own process under
``/usr/bin/time -v``: :func:`dsa_stream.imaging.image_ms` with the simulator's truth as
the expected sources (the QA flux and position check).

Wall time and peak RSS come from ``time -v`` (the largest process of the tree: WSClean,
or the tclean child); the image rms, peak, beam and QA from the stage's result. The
table, the tclean / WSClean ratio and the command are written into
``docs/benchmarks.md`` under ``## Imaging``. Everything is written under a temporary
directory outside the repository (``--data`` keeps the group and the MS for reuse).

Usage (from the repository root):

    .venv/bin/python bench/bench_image.py [--data DIR] [--backends wsclean,tclean]
        [--timeout S] [--keep] [--no-docs]
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
SECTION = "## Imaging"
TIME = "/usr/bin/time"

IMAGE = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import dsa_stream.casa_env
    from pathlib import Path
    from dsa_stream.cli.image import expected_from_truth
    from dsa_stream.imaging import ImagingOptions, image_ms
    ms, out, backend, truth, timeout = json.loads(sys.argv[1])
    opts = ImagingOptions(backend=backend)
    if timeout:
        opts = opts.model_copy(update={"timeout_s": float(timeout)})
    expected = expected_from_truth(Path(truth), None)
    r = image_ms(Path(ms), Path(out), opts, expected=expected, config_hash="bench")
    qa = r.qa
    checked = [s for s in qa.sources if s.checked and s.found]
    doc = {
        "timings": r.timings_s, "run_s": time.perf_counter() - t0, "version": r.backend_version,
        "rms": qa.rms_jy, "residual_rms": qa.residual_rms_jy, "peak": qa.peak_jy,
        "dr": qa.dynamic_range, "beam": qa.beam.model_dump(), "passed": qa.passed,
        "failures": qa.failures(), "n_checked": qa.n_checked,
        "ratios": [s.flux_ratio for s in checked],
        "offsets": [s.offset_beams for s in checked],
        "shape": list(r.shape), "cell": r.cell_arcsec,
    }
    print("RESULT " + json.dumps(doc))
    """
)


def _timed(script: str, payload: list[object]) -> dict[str, object]:
    """Run a script under /usr/bin/time -v; wall (s), peak RSS (MiB) and its RESULT line.

    An imager that hits its time limit is a result too (``timed_out``); any other
    failure ends the benchmark.
    """
    argv = [TIME, "-v", sys.executable, "-c", script, json.dumps(payload)]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if wall is None or rss is None:
        raise SystemExit(f"no /usr/bin/time -v report:\n{proc.stderr[-3000:]}")
    h, m, s = (float(x) if x else 0.0 for x in wall.groups())
    row: dict[str, object] = {
        "wall_s": h * 3600 + m * 60 + s,
        "rss_mib": int(rss.group(1)) / 1024.0,
    }
    if proc.returncode != 0:
        if "ToolTimeoutError" in proc.stderr:
            return {**row, "timed_out": True}
        raise SystemExit(f"benchmark step failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {**row, **json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])}


def prepare(data: Path) -> tuple[Path, Path]:
    """The simulated group's MS and truth file (made once, reused with --data)."""
    from dsa_stream.conversion import ConvertOptions, ValidationOptions, convert_group
    from dsa_stream.simulate import (
        CorruptionOptions,
        SimulationOptions,
        load_truth,
        simulate_night,
    )

    truth_path = data / "truth.json"
    if not truth_path.exists():
        opts = SimulationOptions(
            out_dir=data,
            n_groups=1,
            antennas=96,
            seed=1,
            corruption=CorruptionOptions(gains=False, bandpass=False, noise=True),
        )
        simulate_night(opts)
    ms = data / "group.ms"
    if not (ms / "DSA_STREAM_MANIFEST.json").exists():
        shutil.rmtree(ms, ignore_errors=True)
        truth = load_truth(truth_path)
        files = [data / f for f in truth.groups[0].files]
        checks = ValidationOptions(casatools="off", casacore35="off")
        convert_group(files, ms, ConvertOptions(checksum_inputs=False, validation=checks))
    return ms, truth_path


def run(
    data: Path, work: Path, backends: list[str], timeout: float | None
) -> dict[str, dict[str, object]]:
    ms, truth = prepare(data)
    rows: dict[str, dict[str, object]] = {"load": {"before": os.getloadavg()[0]}}
    for backend in backends:
        out = work / backend
        out.mkdir(parents=True, exist_ok=True)
        print(f"{backend} ...", flush=True)
        rows[backend] = _timed(IMAGE, [str(ms), str(out / "group"), backend, str(truth), timeout])
        log = out / "group.imaging.log"
        if log.exists():  # the imager's log (tclean: with the CASA log) survives the cleanup
            text = log.read_text(errors="replace")
            rows[backend]["major_cycles"] = max(
                len(re.findall(r"Run Major Cycle \d+", text)),
                len(re.findall(r"Initial peak", text)),
            )
            shutil.copy(log, work / f"{backend}.imaging.log")
        print(json.dumps(rows[backend]), flush=True)
        (work / "results.json").write_text(json.dumps(rows, indent=1, default=str))
        shutil.rmtree(out, ignore_errors=True)
    rows["load"]["after"] = os.getloadavg()[0]
    return rows


def _steps(row: dict[str, object]) -> str:
    keys = ("imager", "weights", "primary_beam", "qa", "write", "preview", "total")
    t = row["timings"]
    return ", ".join(f"{k} {t[k]:.1f}" for k in keys if k in t)  # type: ignore[index,operator]


def _qa(row: dict[str, object]) -> str:
    ratios = sorted(row["ratios"])  # type: ignore[type-var]
    offsets = row["offsets"]
    if not ratios:
        return "no sources checked"
    return (
        f"{row['n_checked']} sources, flux ratio {min(ratios):.3f}..{max(ratios):.3f}, "
        f"offset <= {max(offsets):.3f} beam"  # type: ignore[type-var]
    )


def render(rows: dict[str, dict[str, object]], command: str) -> str:
    from dsa_stream.imaging import ImagingOptions

    load = rows.pop("load")
    o = ImagingOptions()
    lines = [
        SECTION,
        "",
        "One full-size group: 96 antennas (4560 cross-correlation baselines), 24 integrations,",
        "16 subbands x 48 channels, 2 polarizations, the default sky (seed 1) and thermal",
        "noise, without gains or bandpasses (the data a perfect calibration delivers),",
        "converted by our converter (midpoint). Both backends image that same MS at the",
        f'default options: {o.size_px} x {o.size_px} pixels of {o.cell_arcsec:g}", Briggs '
        f"{o.robust:g}, all baselines, niter {o.niter}, mgain {o.mgain:g}, auto-threshold "
        f"{o.auto_threshold_sigma:g} sigma, auto-mask {o.auto_mask_sigma:g} sigma (tclean: "
        f"nsigma {o.auto_mask_sigma:g}), WSClean {o.wsclean_gridder}, tclean "
        f"{o.tclean_gridder} + {o.tclean_deconvolver}. Each run is its own process under "
        "`/usr/bin/time -v` (peak RSS: the largest process of the tree, the WSClean or",
        "tclean child included); the stage includes the imager, the imaging weights, the",
        "primary beam, QA, the four FITS products and the PNG.",
        "",
        f"Command (run on {dt.date.today().isoformat()}, dsa-stream {__version__}, "
        f"Python {platform.python_version()}, 2 cores shared with other work; 1-min load "
        f"average {load['before']:.1f} before, {load['after']:.1f} after):",
        "",
        "```",
        command,
        "```",
        "",
        "| backend | wall (process) | peak RSS | image rms | residual rms | peak | beam | "
        "steps (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        if r.get("timed_out"):
            lines.append(
                f"| {name} | did not finish in {r['wall_s']:.0f} s (time limit; "
                f"{r.get('major_cycles', 0)} major cycles started) | "
                f"{float(r['rss_mib']) / 1024:.2f} GiB | | | | | |"  # type: ignore[arg-type]
            )
            continue
        b = r["beam"]
        lines.append(
            f"| {name} ({r['version']}) | {r['wall_s']:.1f} s | "
            f"{float(r['rss_mib']) / 1024:.2f} GiB | {float(r['rms']) * 1e3:.3f} mJy/beam | "  # type: ignore[arg-type]
            f"{float(r['residual_rms']) * 1e3:.3f} mJy/beam | {float(r['peak']):.3f} Jy/beam | "  # type: ignore[arg-type]
            f'{b["bmaj_arcsec"]:.1f}" x {b["bmin_arcsec"]:.1f}" | {_steps(r)} |'  # type: ignore[index]
        )
    lines.append("")
    for name, r in rows.items():
        if r.get("timed_out"):
            continue
        verdict = "passed" if r["passed"] else "FAILED (" + ", ".join(r["failures"]) + ")"  # type: ignore[arg-type]
        lines.append(f"* {name}: QA {verdict}; {_qa(r)}.")
    done = {k: v for k, v in rows.items() if not v.get("timed_out")}
    if "wsclean" in done and "tclean" in done:
        ws, tc = rows["wsclean"], rows["tclean"]
        wall = float(tc["wall_s"]) / float(ws["wall_s"])  # type: ignore[arg-type]
        imager = float(tc["timings"]["imager"]) / float(ws["timings"]["imager"])  # type: ignore[index]
        rss = float(tc["rss_mib"]) / float(ws["rss_mib"])  # type: ignore[arg-type]
        rms = float(tc["rms"]) / float(ws["rms"])  # type: ignore[arg-type]
        lines += [
            "",
            f"tclean / WSClean: wall {wall:.2f}, imager {imager:.2f}, peak RSS {rss:.2f}, "
            f"image rms {rms:.2f}. The cadence of real data is 309 s per group.",
        ]
    lines.append("")
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
    ap.add_argument("--data", type=Path, default=None, help="reuse/keep the group and MS here")
    ap.add_argument("--backends", default="wsclean,tclean", help="comma-separated backends")
    ap.add_argument(
        "--timeout", type=float, default=None, help="imager time limit (s; default: options)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="bench-image-"))
    try:
        data = args.data or tmp / "data"
        data.mkdir(parents=True, exist_ok=True)
        rows = run(data, tmp, backends, args.timeout)
        command = ".venv/bin/python bench/bench_image.py"
        if args.timeout:
            command += f" --timeout {args.timeout:g}"
        section = render(rows, command)
        print(section)
        (tmp / "results.json").write_text(json.dumps(rows, indent=1, default=str))
        if not args.no_docs:
            write_docs(section)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
