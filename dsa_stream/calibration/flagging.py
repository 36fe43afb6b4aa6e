"""Flagging of the calibrator MS before the solve, and the choice of the flagger.

Order (reference-pipelines §4.2): zeros and non-finite values -> autocorrelations ->
the external flagger (AOFlagger, or CASA tfcrop + rflag in a child process) -> the
MAD clip -> dead antennas.

* **MAD clip** (numpy, always available): the data are divided by the model amplitude
  ``M(t, nu)`` (:mod:`dsa_stream.calibration.model`), so the calibrator's drift through
  the beam is removed; for every baseline, channel and correlation the complex median
  over time is the gain product, and a sample further than ``mad_threshold`` robust
  sigmas (1.4826 x the median absolute deviation) from it is flagged. It catches
  time-variable interference and glitches; persistent narrow-band interference needs
  AOFlagger.
* **Dead antennas**: more than ``dead_antenna_flagged`` of an antenna's data flagged, or
  a median |data| / model below ``dead_antenna_amplitude`` x the array median.
* **AOFlagger** runs when ``flagger`` is ``aoflagger``, or ``auto`` and the executable is
  on PATH (``aoflagger [-strategy S] -column DATA MS``, through :func:`run_tool`).

python-casacore is used in this (parent) process; CASA's flagger runs in a child.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from dsa_stream.calibration.options import FlagOptions
from dsa_stream.exceptions import CalibrationError
from dsa_stream.toolrun import ToolCommand, call_in_subprocess, run_tool

logger = logging.getLogger(__name__)

_CHANNELS_PER_CHUNK = 64
#: 1 / Phi^-1(3/4): MAD -> sigma of a Gaussian.
MAD_TO_SIGMA = 1.4826


class FlagSummary(BaseModel):
    """What flagging did."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    flagger: str
    """External flagger used: aoflagger, casa or none."""
    mad_clip: bool
    initial_fraction: float
    """Flagged fraction of the cross-correlations before flagging."""
    final_fraction: float
    """Flagged fraction of the cross-correlations after flagging."""
    steps: dict[str, float]
    """Flagged fraction of the cross-correlations after each step."""
    dead_antennas: tuple[str, ...]
    antenna_flagged: dict[str, float]
    """Flagged fraction of each antenna's cross-correlations (antennas with data)."""


def resolve_flagger(opts: FlagOptions) -> str:
    """The external flagger to run: ``aoflagger``, ``casa`` or ``none``."""
    if opts.flagger == "auto":
        return "aoflagger" if shutil.which(opts.aoflagger_executable) else "none"
    if opts.flagger == "aoflagger" and shutil.which(opts.aoflagger_executable) is None:
        raise CalibrationError(
            f"flagger 'aoflagger' requested but {opts.aoflagger_executable!r} is not on PATH"
        )
    return "none" if opts.flagger == "mad" else opts.flagger


def aoflagger_command(ms: Path, opts: FlagOptions, log_path: Path | None = None) -> ToolCommand:
    """The AOFlagger command line for ``ms``."""
    argv = [opts.aoflagger_executable]
    if opts.aoflagger_strategy is not None:
        argv += ["-strategy", str(opts.aoflagger_strategy)]
    argv += ["-column", "DATA", str(ms)]
    return ToolCommand(
        argv=tuple(argv), timeout_s=opts.timeout_s, log_path=log_path, label="aoflagger"
    )


class _Rows:
    """Row layout of the MS: a (time, baseline) grid of row numbers and antenna indices."""

    def __init__(self, ms: object, times_s: NDArray[np.float64]) -> None:
        self.a1 = np.asarray(ms.getcol("ANTENNA1"))  # type: ignore[attr-defined]
        self.a2 = np.asarray(ms.getcol("ANTENNA2"))  # type: ignore[attr-defined]
        t = np.asarray(ms.getcol("TIME"))  # type: ignore[attr-defined]
        self.tidx = np.clip(np.searchsorted(times_s, t - 1e-3), 0, times_s.size - 1)
        self.cross = self.a1 != self.a2
        bl = self.a1.astype(np.int64) * 100_000 + self.a2
        self.bl_keys, blidx = np.unique(bl, return_inverse=True)
        self.grid = np.full((times_s.size, self.bl_keys.size), -1, dtype=np.int64)
        self.grid[self.tidx, blidx] = np.arange(t.size)
        self.bl_cross = (self.bl_keys // 100_000) != (self.bl_keys % 100_000)

    @property
    def nrows(self) -> int:
        """Rows of the MS."""
        return int(self.a1.size)


def _fraction(flags: NDArray[np.bool_], rows: _Rows) -> float:
    return float(flags[rows.cross].mean()) if rows.cross.any() else 1.0


def _mad_clip(
    data: NDArray[np.complex64],
    flags: NDArray[np.bool_],
    model: NDArray[np.float64],
    rows: _Rows,
    threshold: float,
) -> None:
    """Flag time outliers of data / model per baseline, channel, correlation (in place)."""
    v = (data / model[rows.tidx][:, :, None].astype(np.float32)).astype(np.complex64)
    v[flags] = np.nan
    present = rows.grid >= 0
    cube = np.full((*rows.grid.shape, *v.shape[1:]), np.nan, dtype=np.complex64)
    cube[present] = v[rows.grid[present]]
    cube[:, ~rows.bl_cross] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (flagged cells)
        centre = np.nanmedian(cube.real, axis=0) + 1j * np.nanmedian(cube.imag, axis=0)
        dev = np.abs(cube - centre[None])
        sigma = MAD_TO_SIGMA * np.nanmedian(dev, axis=0)
        bad = dev > threshold * np.where(sigma > 0, sigma, np.inf)[None]
    flags[rows.grid[present]] |= bad[present]


def _antenna_counts(
    data: NDArray[np.complex64],
    flags: NDArray[np.bool_],
    model: NDArray[np.float64],
    rows: _Rows,
    acc: dict[int, list[float]],
) -> None:
    """Add each antenna's (flagged, total, median |data|/model) of one channel chunk."""
    ratio = np.abs(data) / model[rows.tidx][:, :, None]
    for ant in np.unique(np.concatenate([rows.a1[rows.cross], rows.a2[rows.cross]])):
        sel = rows.cross & ((rows.a1 == ant) | (rows.a2 == ant))
        f = flags[sel]
        good = ratio[sel][~f]
        entry = acc.setdefault(int(ant), [0.0, 0.0, []])  # type: ignore[list-item]
        entry[0] += float(f.sum())
        entry[1] += float(f.size)
        if good.size:
            entry[2].append(float(np.median(good)))  # type: ignore[attr-defined]


def _dead(acc: dict[int, list], opts: FlagOptions) -> list[int]:  # type: ignore[type-arg]
    frac = {a: e[0] / max(e[1], 1.0) for a, e in acc.items()}
    level = {a: float(np.median(e[2])) if e[2] else 0.0 for a, e in acc.items()}
    live = [v for a, v in level.items() if frac[a] < opts.dead_antenna_flagged and v > 0]
    ref = float(np.median(live)) if live else 0.0
    return sorted(
        a
        for a in frac
        if frac[a] > opts.dead_antenna_flagged or level[a] < opts.dead_antenna_amplitude * ref
    )


def _flag_chunk(
    ms: object,
    rows: _Rows,
    chans: tuple[int, int],
    model: NDArray[np.float64],
    opts: FlagOptions,
    mad_clip: bool,
) -> tuple[int, int, int]:
    """Zeros, autos and the MAD clip on channels [c0, c1); returns flagged counts."""
    c0, c1 = chans
    n = rows.nrows
    blc, trc = [c0, 0], [c1 - 1, -1]
    data = np.asarray(ms.getcolslice("DATA", blc, trc, [], 0, n))  # type: ignore[attr-defined]
    flags = np.asarray(ms.getcolslice("FLAG", blc, trc, [], 0, n))  # type: ignore[attr-defined]
    before = int(flags[rows.cross].sum())
    flags |= (data == 0) | ~np.isfinite(data)
    flags[~rows.cross] = True
    after_basic = int(flags[rows.cross].sum())
    if mad_clip:
        _mad_clip(data, flags, model[:, c0:c1], rows, opts.mad_threshold)
    ms.putcolslice("FLAG", flags, blc, trc, [], 0, n)  # type: ignore[attr-defined]
    return before, after_basic, int(flags[rows.cross].sum())


def numpy_flags(
    ms_path: Path,
    model: NDArray[np.float64],
    times_s: NDArray[np.float64],
    opts: FlagOptions,
    *,
    mad_clip: bool,
) -> tuple[dict[str, float], list[int], dict[int, float], float]:
    """Zeros, autos, MAD clip and dead antennas on ``ms_path`` (flags written back).

    The data are processed in chunks of channels (bounded memory at full size).

    Returns:
        (fraction after each step, dead antenna indices, per-antenna flagged fraction,
        initial fraction).
    """
    from casacore import tables

    nchan = model.shape[1]
    with tables.table(str(ms_path), ack=False, readonly=False) as ms:
        rows = _Rows(ms, times_s)
        total = float(rows.cross.sum() * nchan * ms.getcell("FLAG", 0).shape[1])
        counts = np.zeros(3)
        for c0 in range(0, nchan, _CHANNELS_PER_CHUNK):
            chans = (c0, min(nchan, c0 + _CHANNELS_PER_CHUNK))
            counts += _flag_chunk(ms, rows, chans, model, opts, mad_clip)
        steps = {"zeros+autos": counts[1] / total}
        if mad_clip:
            steps["mad"] = counts[2] / total
        flags = np.asarray(ms.getcol("FLAG"))
        acc: dict[int, list] = {}  # type: ignore[type-arg]
        for c0 in range(0, nchan, _CHANNELS_PER_CHUNK):
            c1 = min(nchan, c0 + _CHANNELS_PER_CHUNK)
            data = np.asarray(ms.getcolslice("DATA", [c0, 0], [c1 - 1, -1], [], 0, rows.nrows))
            _antenna_counts(data, flags[:, c0:c1], model[:, c0:c1], rows, acc)
        dead = _dead(acc, opts)
        for ant in dead:
            flags[(rows.a1 == ant) | (rows.a2 == ant)] = True
        ms.putcol("FLAG", flags)
        steps["dead antennas"] = _fraction(flags, rows)
        frac = {a: float(flags[rows.cross & ((rows.a1 == a) | (rows.a2 == a))].mean()) for a in acc}
    return steps, dead, frac, counts[0] / total


def flag_calibrator_ms(
    ms_path: Path,
    model: NDArray[np.float64],
    times_s: NDArray[np.float64],
    opts: FlagOptions,
    antenna_names: list[str],
    *,
    workdir: Path,
    timeout_s: float,
) -> FlagSummary:
    """Run the flagging sequence of the module docstring on the calibrator MS."""
    flagger = resolve_flagger(opts)
    if flagger == "aoflagger":
        run_tool(aoflagger_command(ms_path, opts, workdir / "aoflagger.log"))
    elif flagger == "casa":
        call_in_subprocess(
            "dsa_stream.calibration.casa_steps:flag_with_casa",
            {"ms": str(ms_path), "workdir": str(workdir)},
            timeout_s=timeout_s,
            log_path=workdir / "casa-flag.log",
            label="CASA flagging",
        )
    mad = opts.flagger in ("auto", "mad")
    steps, dead, frac, initial = numpy_flags(ms_path, model, times_s, opts, mad_clip=mad)
    names = [antenna_names[a] for a in dead]
    if names:
        logger.warning("%s: dead antennas flagged: %s", ms_path, ", ".join(names))
    return FlagSummary(
        flagger=flagger,
        mad_clip=mad,
        initial_fraction=initial,
        final_fraction=steps["dead antennas"],
        steps=steps,
        dead_antennas=tuple(names),
        antenna_flagged={antenna_names[a]: v for a, v in sorted(frac.items())},
    )
