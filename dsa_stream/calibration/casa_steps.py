"""CASA steps of the calibration stage, each run in a child process.

Every public function here is a target of
:func:`dsa_stream.toolrun.call_in_subprocess` (``"dsa_stream.calibration.casa_steps:..."``):
it runs in a fresh interpreter with a hard timeout, so a hung or crashing CASA task
cannot take the worker down. This module must never import python-casacore (directly
or through another module): casatools and python-casacore are two casacore builds and
must not share a process. It imports only the standard library at module level.

The calls are built as data first (:func:`solve_calls`, :func:`apply_call`) so the
exact parameters are unit-tested without CASA and recorded with the tables.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Minimum SNR of the pre-bandpass phase solve (reference-pipelines §4.2).
PREBANDPASS_MINSNR = 3.0


def _central_channels(nchan: int, fraction: float) -> str:
    """CASA spw selection of the central ``fraction`` of ``nchan`` channels."""
    width = max(1, round(nchan * fraction))
    lo = max(0, (nchan - width) // 2)
    return f"0:{lo}~{min(nchan - 1, lo + width - 1)}"


def solve_calls(
    ms: str, tables: dict[str, str], refant: list[str], params: dict[str, Any], nchan: int
) -> list[tuple[str, dict[str, Any]]]:
    """The CASA task calls of the solve chain, in order: (task name, keyword arguments).

    ``tables`` maps ``prebandpass``, ``bandpass`` and ``gain`` to output paths;
    ``params`` is a dumped :class:`~dsa_stream.calibration.options.SolveParameters`.
    """
    common = {
        "vis": ms,
        "refant": ",".join(refant),
        "minblperant": int(params["minblperant"]),
        "uvrange": params["uvrange"],
    }
    return [
        (
            "gaincal",
            {
                **common,
                "caltable": tables["prebandpass"],
                "gaintype": "G",
                "calmode": "p",
                "solint": params["prebandpass_solint"],
                "spw": _central_channels(nchan, float(params["prebandpass_channel_fraction"])),
                "minsnr": PREBANDPASS_MINSNR,
                "combine": "",
            },
        ),
        (
            "bandpass",
            {
                **common,
                "caltable": tables["bandpass"],
                "bandtype": "B",
                "solint": "inf",
                "combine": "scan",
                "solnorm": bool(params["bandpass_solnorm"]),
                "minsnr": float(params["bandpass_minsnr"]),
                "fillgaps": int(params["bandpass_fillgaps"]),
                "gaintable": [tables["prebandpass"]],
                "interp": ["nearest"],
            },
        ),
        (
            "gaincal",
            {
                **common,
                "caltable": tables["gain"],
                "gaintype": "G",
                "calmode": "ap",
                "solint": params["gain_solint"],
                "minsnr": float(params["gain_minsnr"]),
                "combine": "",
                "gaintable": [tables["bandpass"]],
                "interp": ["nearest"],
            },
        ),
    ]


def apply_call(ms: str, gaintables: list[str], interp: str, calwt: bool) -> dict[str, Any]:
    """Keyword arguments of the applycal call (bandpass first, then gains)."""
    return {
        "vis": ms,
        "gaintable": list(gaintables),
        "interp": [interp] * len(gaintables),
        "calwt": [calwt] * len(gaintables),
        "flagbackup": False,
        "applymode": "calflag",
    }


def casa_flag_calls(ms: str) -> list[dict[str, Any]]:
    """Flagdata calls of the CASA flagger: tfcrop, then rflag, then extend."""
    base = {"vis": ms, "flagbackup": False, "action": "apply", "datacolumn": "data"}
    return [
        {**base, "mode": "tfcrop"},
        {**base, "mode": "rflag"},
        {"vis": ms, "flagbackup": False, "mode": "extend", "growtime": 80.0, "growfreq": 80.0},
    ]


def _tasks(workdir: str) -> Any:
    from dsa_stream import casa_env

    tasks = casa_env.casatasks()
    Path(workdir).mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # some casatasks write files into the working directory
    return tasks


def _check_table(path: str, what: str) -> int:
    from dsa_stream import casa_env
    from dsa_stream.exceptions import CalibrationError

    if not (Path(path) / "table.dat").exists():
        raise CalibrationError(f"CASA produced no {what} table at {path} (see the CASA log)")
    tb = casa_env.casatools().table()
    try:
        tb.open(path)
        n = int(tb.nrows())
    finally:
        tb.close()
        tb.done()
    if n == 0:
        raise CalibrationError(f"the {what} table {path} has no solutions (all flagged or low SNR)")
    return n


def flag_with_casa(ms: str, workdir: str) -> dict[str, float]:
    """Run CASA's tfcrop + rflag + extend on ``ms`` (child process)."""
    tasks = _tasks(workdir)
    timings = {}
    for call in casa_flag_calls(ms):
        t0 = time.perf_counter()
        tasks.flagdata(**call)
        timings[f"flagdata {call['mode']}"] = time.perf_counter() - t0
    return timings


def solve_chain(
    ms: str,
    workdir: str,
    tables: dict[str, str],
    refant: list[str],
    params: dict[str, Any],
    nchan: int,
) -> dict[str, Any]:
    """Solve G0 (phase), B (bandpass), G (amplitude + phase) on ``ms`` (child process).

    Existing tables at the output paths are removed first. Returns the number of
    solution rows of each table and the time of each task.

    Raises:
        CalibrationError: a task produced no table or a table without solutions.
    """
    tasks = _tasks(workdir)
    for path in tables.values():
        if Path(path).exists():
            shutil.rmtree(path)
    timings: dict[str, float] = {}
    rows: dict[str, int] = {}
    names = ("prebandpass", "bandpass", "gain")
    for name, (task, kwargs) in zip(
        names, solve_calls(ms, tables, refant, params, nchan), strict=True
    ):
        t0 = time.perf_counter()
        getattr(tasks, task)(**kwargs)
        timings[name] = time.perf_counter() - t0
        rows[name] = _check_table(tables[name], name)
        logger.info("%s solved in %.1f s (%d rows)", name, timings[name], rows[name])
    return {"rows": rows, "timings_s": timings}


def apply_tables(
    ms: str, workdir: str, gaintables: list[str], interp: str, calwt: bool
) -> dict[str, Any]:
    """Applycal ``gaintables`` to ``ms`` (child process): CORRECTED_DATA is (re)written."""
    from dsa_stream import casa_env
    from dsa_stream.exceptions import CalibrationError

    tasks = _tasks(workdir)
    t0 = time.perf_counter()
    tasks.applycal(**apply_call(ms, gaintables, interp, calwt))
    elapsed = time.perf_counter() - t0
    tb = casa_env.casatools().table()
    try:
        tb.open(ms)
        cols = list(tb.colnames())
    finally:
        tb.close()
        tb.done()
    if "CORRECTED_DATA" not in cols:
        raise CalibrationError(f"applycal wrote no CORRECTED_DATA into {ms} (see the CASA log)")
    return {"timings_s": {"applycal": elapsed}}


def phaseshift_to(ms: str, out: str, workdir: str, ra_deg: float, dec_deg: float) -> str:
    """Casatasks phaseshift of ``ms`` to an ICRS position, written to ``out`` (child)."""
    tasks = _tasks(workdir)
    if Path(out).exists():
        shutil.rmtree(out)
    tasks.phaseshift(vis=ms, outputvis=out, phasecenter=f"ICRS {ra_deg:.9f}deg {dec_deg:.9f}deg")
    if not (Path(out) / "table.dat").exists():
        from dsa_stream.exceptions import CalibrationError

        raise CalibrationError(f"phaseshift wrote no MS at {out} (see the CASA log)")
    return out
