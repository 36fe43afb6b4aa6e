"""Solve a bandpass + gain table set on a calibrator group.

:func:`solve_group` takes a group (its subband files, or an MS) and:

1. reads the group's times and pointing from its data and finds the calibrator
   transit (:mod:`~dsa_stream.calibration.transits`);
2. makes the calibrator MS, phased to the calibrator: subband files are converted in
   mode ``icrs`` at the calibrator (one exact rephasing from the raw data, and the MS
   keeps the per-integration meridian centres the beam model needs); an MS already
   phased there is copied, any other MS is rephased with CASA ``phaseshift`` in a
   child process;
3. writes MODEL_DATA = S(nu) x A(theta(t), nu) (:mod:`~dsa_stream.calibration.model`);
4. flags (:mod:`~dsa_stream.calibration.flagging`) and chooses the reference antenna
   (:mod:`~dsa_stream.calibration.refant`);
5. solves in a CASA child process with a hard timeout: phase-only G0 on the central
   channels -> bandpass B (G0 applied, solnorm, minimum SNR 5, gap filling) -> amplitude
   + phase gains G (B applied);
6. assesses the tables (:mod:`~dsa_stream.calibration.qa`), plots them, and computes
   their validity windows around the transit.

Everything is written into ``out_dir/<set name>/`` with ``calibration.json``, the
:class:`SolveResult`. Convention of the solutions: CASA corrects
``V_obs(a1, a2) = g_a1 conj(g_a2) V_model`` on the MS's DATA, which the conversion
writes as ``conj`` of the UVH5 data; so for an injected (UVH5) gain ``G_a`` the solved
total ``B_a G_a = conj(G_a) x exp(i phi_ref)`` (see docs/calibration.md).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from dsa_stream import naming
from dsa_stream.calibration.catalog import Calibrator, get_calibrator
from dsa_stream.calibration.flagging import FlagSummary, flag_calibrator_ms
from dsa_stream.calibration.model import (
    ModelSummary,
    check_phase_centre,
    model_amplitudes,
    write_model_data,
)
from dsa_stream.calibration.observation import (
    GroupObservation,
    mjd_to_datetime,
    observation_from_ms,
    read_observation,
)
from dsa_stream.calibration.options import SolveOptions, SolveParameters
from dsa_stream.calibration.qa import QaReport, assess_tables
from dsa_stream.calibration.refant import choose_refant
from dsa_stream.calibration.transits import TransitInfo, TransitReport, find_transits
from dsa_stream.calibration.validity import ValidityWindow, validity_windows
from dsa_stream.exceptions import CalibrationError
from dsa_stream.toolrun import call_in_subprocess
from dsa_stream.versions import software_versions

logger = logging.getLogger(__name__)

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
Progress = Callable[[str], None]


class NotCalibratorGroupError(CalibrationError):
    """No usable calibrator transits during the group."""

    permanent = True


class CalTableInfo(BaseModel):
    """One table of a solved set."""

    model_config = _FROZEN

    table_type: Literal["prebandpass", "bandpass", "gain"]
    path: Path
    n_rows: int
    window: ValidityWindow | None
    """Validity window in observation time (None for the pre-bandpass phases, which are
    used only during the solve and never applied)."""


class SolveResult(BaseModel):
    """A solved table set and everything needed to register and trust it."""

    model_config = _FROZEN

    set_name: str
    group_key: str
    """Group key (observation start) of the calibrator group."""
    calibrator: TransitInfo
    transit: datetime
    """Calibrator transit (observation time, from the data)."""
    obs_start: datetime
    obs_end: datetime
    dec_deg: float
    """Apparent pointing Dec of the calibrator group (deg)."""
    inputs: tuple[Path, ...]
    ms_path: Path
    """The calibrator MS (phased to the calibrator, with MODEL_DATA and flags)."""
    tables: tuple[CalTableInfo, ...]
    refant: str
    """Reference antenna CASA used (the first choice unless it had no solution)."""
    refant_candidates: tuple[str, ...]
    """The list handed to CASA, preferred first."""
    model: ModelSummary
    flagging: FlagSummary
    qa: QaReport
    plots: tuple[Path, ...]
    parameters: SolveParameters
    casa_calls: tuple[tuple[str, dict[str, Any]], ...]
    software: dict[str, str | None]
    timings_s: dict[str, float]
    """Wall time of each step (bookkeeping)."""

    @property
    def passed(self) -> bool:
        """True when the set passed QA (it may be applied)."""
        return self.qa.passed

    def table(self, table_type: str) -> CalTableInfo:
        """The table of one type."""
        for t in self.tables:
            if t.table_type == table_type:
                return t
        raise CalibrationError(f"set {self.set_name} has no {table_type} table")


def pick_calibrator(report: TransitReport, forced: str | None) -> TransitInfo:
    """The source to solve on: ``forced`` (which must transit in the group) or the best.

    Raises:
        NotCalibratorGroupError: no usable transit (or the forced one is not in the group).
    """
    if forced is not None:
        name = get_calibrator(forced).name
        try:
            info = report.source(name)
        except CalibrationError as exc:
            raise NotCalibratorGroupError(str(exc)) from exc
        if not info.transit_in_group:
            raise NotCalibratorGroupError(
                f"{name} transits at {info.transit_utc}, outside the group "
                f"{report.start_utc} .. {report.end_utc}"
            )
        if not info.usable:
            logger.warning(
                "solving on %s although it is below the thresholds: %s", name, info.reason
            )
        return info
    if report.calibrator is None:
        seen = "; ".join(f"{s.name}: {s.reason}" for s in report.sources) or "none in the beam"
        raise NotCalibratorGroupError(
            f"no usable calibrator transits during {report.start_utc} .. {report.end_utc} "
            f"(Dec {report.pointing_dec_deg:.3f} deg; {seen})"
        )
    return report.source(report.calibrator)


def _calibrator_ms(
    obs: GroupObservation,
    cal: Calibrator,
    ms: Path,
    opts: SolveOptions,
    cancel: threading.Event | None,
) -> GroupObservation:
    """Write the calibrator MS at ``ms`` and return its observation."""
    if ms.exists():
        shutil.rmtree(ms)
    if obs.source == "uvh5":
        from dsa_stream.conversion import ConvertOptions, ValidationOptions, convert_group

        convert_group(
            list(obs.paths),
            ms,
            ConvertOptions(
                mode="icrs",
                phase_center_deg=(cal.ra_deg, cal.dec_deg),
                phase_center_name=cal.name,
                channel_average=opts.channel_average,
                on_existing="replace",
                checksum_inputs=False,
                validation=ValidationOptions(
                    casatools="off", casacore35="off", timeout_s=opts.convert_timeout_s
                ),
            ),
        )
        return observation_from_ms(ms)
    try:
        check_phase_centre(cal, obs)
        shutil.copytree(obs.paths[0], ms, symlinks=True)
    except CalibrationError:
        logger.info("%s is not phased to %s: CASA phaseshift", obs.paths[0], cal.name)
        call_in_subprocess(
            "dsa_stream.calibration.casa_steps:phaseshift_to",
            {
                "ms": str(obs.paths[0]),
                "out": str(ms),
                "workdir": str(ms.parent),
                "ra_deg": cal.ra_deg,
                "dec_deg": cal.dec_deg,
            },
            timeout_s=opts.timeout_s,
            log_path=ms.parent / "casa-phaseshift.log",
            label="CASA phaseshift",
            cancel=cancel,
        )
    shifted = observation_from_ms(ms)
    return obs.model_copy(
        update={
            "paths": (ms,),
            "phase_centre_deg": shifted.phase_centre_deg,
            "phase_centre_name": shifted.phase_centre_name,
        }
    )


def _ms_layout(ms: Path) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    """Channel frequencies, antenna names (by index) and positions of the MS."""
    from casacore import tables

    with tables.table(f"{ms}/SPECTRAL_WINDOW", ack=False) as sw:
        freqs = np.asarray(sw.getcell("CHAN_FREQ", 0), dtype=np.float64)
    with tables.table(f"{ms}/ANTENNA", ack=False) as at:
        names = [str(n) for n in at.getcol("NAME")]
        pos = np.asarray(at.getcol("POSITION"), dtype=np.float64)
    return freqs, names, {n: pos[i] for i, n in enumerate(names)}


def _table_paths(set_dir: Path, set_name: str) -> dict[str, str]:
    return {
        kind: str(set_dir / naming.caltable_filename(set_name, kind))
        for kind in ("prebandpass", "bandpass", "gain")
    }


class _Clock:
    """Times the steps of a solve (bookkeeping) and reports them."""

    def __init__(self, progress: Progress | None) -> None:
        self.timings: dict[str, float] = {}
        self.progress = progress
        self._t = time.perf_counter()
        self._start = self._t

    def step(self, name: str, next_label: str | None = None) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self._t
        self._t = now
        if self.progress is not None and next_label is not None:
            self.progress(next_label)

    def total(self) -> float:
        return time.perf_counter() - self._start


def _solve_in_casa(
    ms: Path,
    paths: dict[str, str],
    refants: list[str],
    opts: SolveOptions,
    nchan: int,
    cancel: threading.Event | None,
) -> tuple[dict[str, int], dict[str, float]]:
    params = opts.parameters.model_dump(mode="json")
    got = call_in_subprocess(
        "dsa_stream.calibration.casa_steps:solve_chain",
        {
            "ms": str(ms),
            "workdir": str(ms.parent),
            "tables": paths,
            "refant": refants,
            "params": params,
            "nchan": nchan,
        },
        timeout_s=opts.timeout_s,
        log_path=ms.parent / "casa-solve.log",
        label="CASA solve",
        cancel=cancel,
    )
    return got["rows"], got["timings_s"]


def solve_group(
    inputs: Sequence[Path],
    out_dir: Path,
    opts: SolveOptions | None = None,
    *,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> SolveResult:
    """Solve a bandpass + gain set on the calibrator group ``inputs`` (module docstring).

    Args:
        inputs: The group's subband files (or their directory), or one MS.
        out_dir: Parent directory of the set directory ``<set name>/``.
        opts: Solve options.
        cancel: Set it to kill the CASA child processes (lost lease, shutdown).
        progress: Called with a label before each slow step.

    Raises:
        NotCalibratorGroupError: no usable calibrator transits during the group.
        ObservationTimeError: the group's time cannot be read from its data.
        CalibrationError / ToolError: a step failed (the CASA log is in the set directory).
    """
    opts = opts or SolveOptions()
    clock = _Clock(progress)
    obs = read_observation(inputs)
    info = pick_calibrator(find_transits(obs, opts.transit), opts.calibrator)
    cal = get_calibrator(info.name)
    set_name = naming.format_calset_name(naming.CalSetName(naming.group_key(obs.start), cal.name))
    set_dir = Path(out_dir) / set_name
    set_dir.mkdir(parents=True, exist_ok=True)
    clock.step("transits", f"calibrator MS ({cal.name})")
    obs_ms = _calibrator_ms(obs, cal, set_dir / naming.calset_ms_filename(set_name), opts, cancel)
    ms = obs_ms.paths[0]
    clock.step("calibrator MS", "model and flags")
    model_summary = write_model_data(ms, cal, obs_ms)
    freqs, names, positions = _ms_layout(ms)
    amp, _, _ = model_amplitudes(cal, obs_ms, freqs)
    flags = flag_calibrator_ms(
        ms,
        amp,
        np.array(obs_ms.times_mjd) * 86400.0,
        opts.flagging,
        names,
        workdir=set_dir,
        timeout_s=opts.timeout_s,
    )
    refants = choose_refant(flags.antenna_flagged, positions, opts.parameters.refant)
    clock.step("model+flags", f"CASA solve (refant {refants[0]})")
    paths = _table_paths(set_dir, set_name)
    rows, casa_t = _solve_in_casa(ms, paths, refants, opts, freqs.size, cancel)
    clock.step("solve", "QA and plots")
    return _finish(
        _Parts(
            obs=obs,
            info=info,
            set_name=set_name,
            set_dir=set_dir,
            ms=ms,
            paths=paths,
            rows=rows,
            refants=refants,
            model=model_summary,
            flags=flags,
            nchan=int(freqs.size),
        ),
        opts,
        clock,
        casa_t,
    )


class _Parts(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    obs: GroupObservation
    info: TransitInfo
    set_name: str
    set_dir: Path
    ms: Path
    paths: dict[str, str]
    rows: dict[str, int]
    refants: list[str]
    model: ModelSummary
    flags: FlagSummary
    nchan: int


def _finish(p: _Parts, opts: SolveOptions, clock: _Clock, casa_t: dict[str, float]) -> SolveResult:
    from dsa_stream.calibration.casa_steps import solve_calls

    data_ants = sorted(p.flags.antenna_flagged, key=lambda n: (len(n), n))
    qa = assess_tables(Path(p.paths["bandpass"]), Path(p.paths["gain"]), data_ants, opts.qa)
    plots: tuple[Path, ...] = ()
    refant = qa.refant_used[0] if qa.refant_used else p.refants[0]
    if opts.plots:
        from dsa_stream.calibration.plots import plot_table_set

        plots = plot_table_set(
            p.set_name,
            Path(p.paths["bandpass"]),
            Path(p.paths["gain"]),
            data_ants,
            refant,
            p.set_dir,
        )
    transit = mjd_to_datetime(p.info.transit_mjd)
    windows = validity_windows(transit, opts.validity)
    tables = tuple(
        CalTableInfo(
            table_type=kind,  # type: ignore[arg-type]
            path=Path(p.paths[kind]),
            n_rows=p.rows[kind],
            window=windows.get(kind),  # type: ignore[call-overload]
        )
        for kind in ("prebandpass", "bandpass", "gain")
    )
    clock.step("qa+plots")
    timings = {**clock.timings, **{f"casa {k}": v for k, v in casa_t.items()}}
    timings["total"] = clock.total()
    result = SolveResult(
        set_name=p.set_name,
        group_key=naming.group_key(p.obs.start),
        calibrator=p.info,
        transit=transit,
        obs_start=p.obs.start,
        obs_end=p.obs.end,
        dec_deg=p.obs.pointing_dec_deg,
        inputs=p.obs.paths,
        ms_path=p.ms,
        tables=tables,
        refant=refant,
        refant_candidates=tuple(p.refants),
        model=p.model,
        flagging=p.flags,
        qa=qa,
        plots=plots,
        parameters=opts.parameters,
        casa_calls=tuple(
            solve_calls(
                str(p.ms), p.paths, p.refants, opts.parameters.model_dump(mode="json"), p.nchan
            )
        ),
        software=software_versions(include_external=False),
        timings_s=timings,
    )
    write_result(result, p.set_dir / naming.CALSET_RECORD_FILENAME)
    level = logging.INFO if qa.passed else logging.WARNING
    logger.log(
        level,
        "set %s: QA %s%s (refant %s, %.0f s)",
        p.set_name,
        "passed" if qa.passed else "FAILED",
        "" if qa.passed else ": " + "; ".join(qa.problems),
        refant,
        timings["total"],
    )
    return result


def write_result(result: SolveResult, path: Path) -> None:
    """Write a solve result as JSON (atomically)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.model_dump(mode="json"), indent=1) + "\n")
    tmp.replace(path)


def read_result(path: Path) -> SolveResult:
    """Read a solve result written by :func:`write_result`."""
    try:
        return SolveResult.model_validate_json(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"cannot read the solve record {path}: {exc}") from exc
