"""Benchmark the conversion of one full-size DSA-110 group against pyuvdata's own path.

Simulates one 96-antenna group (16 x 48 channels, 24 integrations; ~45 s) into a
temporary directory, then runs, each in its own process under ``/usr/bin/time -v``:

* ``ours``: :func:`dsa_stream.conversion.convert_group` with the default options
  (midpoint phasing, input checksums, every post-conversion check including the
  casatools and casacore 3.5 child processes);
* ``ours, in-process checks only``: the same without the two child-process checks;
* ``pyuvdata``: per-file ``UVData.read`` + ``fast_concat(axis="freq")``, meridian
  relabel, ``phase`` to the same midpoint centre, ``write_ms``.

Wall time and peak RSS come from ``time -v``; the MS size from the files. The table,
the ratio and the command are written into ``docs/benchmarks.md`` under
``## Conversion`` (only that section is replaced). The page cache is not dropped:
both converters read the same, warm input files.

Usage (from the repository root):

    .venv/bin/python bench/bench_convert.py [--data DIR] [--keep] [--no-docs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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
SECTION = "## Conversion"
TIME = "/usr/bin/time"

OURS = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import dsa_stream.casa_env
    from dsa_stream.conversion import ConvertOptions, ValidationOptions, convert_group
    files, out, external = json.loads(sys.argv[1])
    v = ValidationOptions() if external else ValidationOptions(casatools="off", casacore35="off")
    r = convert_group(files, out, ConvertOptions(validation=v))
    print("RESULT " + json.dumps({"timings": r.timings_s, "run_s": time.perf_counter() - t0}))
    """
)

PYUVDATA = textwrap.dedent(
    """
    import json, sys, time, warnings
    t0 = time.perf_counter()
    import dsa_stream.casa_env
    import numpy as np
    from pyuvdata import UVData
    from pyuvdata.utils.phasing import transform_app_to_icrs
    from pyuvdata.utils.times import get_lst_for_time
    files, out = json.loads(sys.argv[1])
    warnings.simplefilter("ignore")
    t = {}
    s = time.perf_counter()
    uvs = []
    for f in files:
        uv = UVData()
        uv.read(f, file_type="uvh5", run_check=False, run_check_acceptability=False)
        uv.uvw_array = uv.uvw_array.astype(np.float64)
        uvs.append(uv)
    uvs.sort(key=lambda u: -u.freq_array.max())
    uv = uvs[0].fast_concat(uvs[1:], axis="freq", run_check=False)
    del uvs
    uv.reorder_freqs(channel_order="freq")
    uv.channel_width = np.abs(uv.channel_width)
    t["read"] = time.perf_counter() - s
    s = time.perf_counter()
    dec0 = float(uv.extra_keywords["phase_center_dec"])
    times, inv = np.unique(uv.time_array, return_inverse=True)
    loc = uv.telescope.location
    lla = uv.telescope.location_lat_lon_alt
    lst = get_lst_for_time(times, telescope_loc=loc)
    ra, dec = transform_app_to_icrs(time_array=times, app_ra=lst,
                                    app_dec=np.full(times.size, dec0), telescope_loc=lla)
    uv.phase_center_catalog = {}
    ids = [uv._add_phase_center(cat_name=f"m{k}", cat_type="sidereal", cat_lon=ra[k],
                                cat_lat=dec[k], cat_frame="icrs", cat_epoch=2000.0)
           for k in range(times.size)]
    uv.phase_center_id_array = np.asarray(ids)[inv]
    uv.Nphase = len(ids)
    uv._set_app_coords_helper()
    uv.set_uvws_from_antenna_positions(update_vis=False)
    tmid = np.array([0.5 * (times.min() + times.max())])
    ra_m, dec_m = transform_app_to_icrs(time_array=tmid,
                                        app_ra=get_lst_for_time(tmid, telescope_loc=loc),
                                        app_dec=np.array([dec0]), telescope_loc=lla)
    uv.phase(ra=float(ra_m[0]), dec=float(dec_m[0]), epoch="J2000", cat_name="mid",
             cat_type="sidereal")
    t["relabel_phase"] = time.perf_counter() - s
    s = time.perf_counter()
    uv.write_ms(out, clobber=True, run_check=False)
    t["write_ms"] = time.perf_counter() - s
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


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def simulate(data: Path) -> list[str]:
    from dsa_stream.simulate import SimulationOptions, simulate_night

    existing = sorted(data.glob("*_sb*.hdf5"))
    if len(existing) == 16:
        return [str(p) for p in existing]
    result = simulate_night(SimulationOptions(out_dir=data, n_groups=1, antennas=96, seed=1))
    return [str(data / n) for n in result.groups[0].files]


def run(data: Path, work: Path) -> dict[str, dict[str, object]]:
    files = simulate(data)
    rows = {}
    for name, script, payload in (
        ("ours (default: all checks)", OURS, [files, str(work / "ours.ms"), True]),
        ("ours, in-process checks only", OURS, [files, str(work / "ours_fast.ms"), False]),
        ("pyuvdata read + phase + write_ms", PYUVDATA, [files, str(work / "pyuvdata.ms")]),
    ):
        out = Path(str(payload[1]))
        shutil.rmtree(out, ignore_errors=True)
        print(f"running {name} ...", flush=True)
        row = _timed(script, payload)
        row["size_bytes"] = _size(out)
        rows[name] = row
        print(
            f"  {row['wall_s']:.1f} s, {row['rss_mib']:.0f} MiB, {row['size_bytes'] / 1e9:.2f} GB"
        )
        shutil.rmtree(out, ignore_errors=True)
    return rows


def render(rows: dict[str, dict[str, object]], command: str) -> str:
    ref = rows["pyuvdata read + phase + write_ms"]
    lines = [
        SECTION,
        "",
        "One full-size group: 96 antennas (4656 baselines with autos), 24 integrations, 16",
        "subbands x 48 channels, 2 polarizations, simulated with the default sky (seed 1).",
        "Each converter runs in its own process under `/usr/bin/time -v` on the same warm",
        "input files; both write one SPW of 768 ascending channels phased to the group's",
        "midpoint meridian centre. Ours writes no WEIGHT_SPECTRUM (pyuvdata's write_ms does).",
        "",
        f"Command (run on {dt.date.today().isoformat()}, dsa-stream {__version__}, "
        f"Python {platform.python_version()}, 2 cores):",
        "",
        "```",
        command,
        "```",
        "",
        "| converter | wall (process) | peak RSS | MS size | wall vs pyuvdata | steps (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items())  # type: ignore[union-attr]
        ratio = float(r["wall_s"]) / float(ref["wall_s"])  # type: ignore[arg-type]
        lines.append(
            f"| {name} | {r['wall_s']:.1f} s | {r['rss_mib'] / 1024:.2f} GiB | "
            f"{int(r['size_bytes']) / 1e9:.2f} GB | {ratio:.2f} | {steps} |"  # type: ignore[call-overload]
        )
    lines += [
        "",
        "Wall includes interpreter start and imports (about 3-5 s). Ours includes the input",
        "checks, xxh3 checksums of the inputs, the manifest, fsync of the MS and, in the",
        "default row, the casatools and casacore 3.5 child-process checks. The cadence of",
        'real data is 309 s per group. "phasing" holds a one-time cost of about 4 s (the',
        "first pyuvdata/astropy time and coordinate call of a process), which a daemon pays once.",
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
    ap.add_argument("--data", type=Path, default=None, help="reuse/keep the simulated group here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    try:
        data = args.data or tmp / "data"
        data.mkdir(parents=True, exist_ok=True)
        rows = run(data, tmp)
        command = ".venv/bin/python bench/bench_convert.py"
        section = render(rows, command)
        print(section)
        if not args.no_docs:
            write_docs(section)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
