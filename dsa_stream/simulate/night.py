"""Simulate a night: plan it, write ``truth.json``, then compute and write every subband file.

Random streams: every draw uses ``numpy.random.default_rng([seed, stream, ...])`` with
the stream identifiers 1 sky (per 1 deg cell), 2 gains, 3 noise (per group and
subband), 4 file-name jitter (per group), so that changing one part of a night (more
groups, fewer subbands) does not change the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from dsa_stream import __version__, instrument, naming
from dsa_stream.exceptions import SimulationError
from dsa_stream.simulate.correlator import (
    FileCallback,
    Pacer,
    PendingFile,
    temporary_path,
    write_observation,
)
from dsa_stream.simulate.options import SimulationOptions
from dsa_stream.simulate.plan import NightPlan, plan_night
from dsa_stream.simulate.truth import write_truth
from dsa_stream.simulate.uvh5 import SubbandFile, extra_keywords, static_header
from dsa_stream.simulate.visibilities import (
    NOISE_STREAM,
    corrupt,
    model_visibilities,
    noise_spec,
)

logger = logging.getLogger(__name__)

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class GroupResult(BaseModel):
    """Files written for one observation."""

    model_config = _FROZEN

    index: int
    key: str
    """Group key (observation start, from the data)."""
    files: tuple[str, ...]
    """Names of the complete files, in subband order."""
    size_bytes: int
    contains_calibrator_transit: bool


class SimulationResult(BaseModel):
    """What :func:`simulate_night` wrote."""

    model_config = _FROZEN

    out_dir: Path
    truth_path: Path
    groups: tuple[GroupResult, ...]
    calibrator_group: int | None
    """Index of the group containing the calibrator transit, if any."""
    n_files: int
    total_bytes: int
    elapsed_s: float
    """Wall time of the run (bookkeeping only)."""
    stopped: bool
    """True when a stop event ended the run early."""


def subband_content(plan: NightPlan, group_index: int, subband: int) -> SubbandFile:
    """Compute one subband file of one observation (model, noise, gains)."""
    opts = plan.opts
    g, sky = plan.groups[group_index], plan.group_skies[group_index]
    freqs = instrument.subband_frequencies(subband, opts.channels_per_subband)
    model = model_visibilities(plan.uvw_m, sky, freqs, opts.primary_beam)
    rng = (
        np.random.default_rng([opts.seed, NOISE_STREAM, group_index, subband])
        if opts.corruption.noise
        else None
    )
    vis = corrupt(
        model,
        plan.ant1_idx,
        plan.ant2_idx,
        plan.instrument.total_gain(freqs),
        noise_spec(opts.corruption.sefd_jy, plan.channel_width_hz),
        rng,
    )
    history = (
        f"Simulated DSA-110 observation {g.key} subband {subband:02d}, written by dsa-stream "
        f"{__version__} (dsa_stream.simulate, seed {opts.seed}) in the layout of the "
        "dsa110-meridian-fs correlator writer."
    )
    return SubbandFile(
        static=static_header(
            rel_ecef_m=plan.layout.rel_ecef_m,
            n_antennas_data=int(plan.layout.active.size),
            nbls=int(plan.ant1.size),
            freqs_hz=freqs,
            channel_width_hz=plan.channel_width_hz,
            history=history,
        ),
        extra_keywords=extra_keywords(plan.dec0_rad),
        nbls=int(plan.ant1.size),
        ntimes=instrument.N_INTEGRATIONS,
        time_jd=g.time_jd,
        uvw_m=plan.uvw_m,
        ant1=plan.ant1,
        ant2=plan.ant2,
        visdata=vis,
    )


def pending_files(plan: NightPlan, group_index: int) -> Iterator[PendingFile]:
    """The files of one observation, computed one subband at a time."""
    g = plan.groups[group_index]
    for sb in plan.opts.subbands:
        path = plan.opts.out_dir / g.filename(sb)
        yield PendingFile(group_index, sb, path, subband_content(plan, group_index, sb))


def _check_targets(plan: NightPlan) -> None:
    out = plan.opts.out_dir
    targets = [out / naming.NIGHT_TRUTH_FILENAME]
    targets += [out / name for g in plan.truth.groups for name in g.files]
    existing = [p.name for p in targets if p.exists() or temporary_path(p).exists()]
    if existing and not plan.opts.overwrite:
        shown = ", ".join(existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise SimulationError(
            f"{len(existing)} output file(s) already exist in {out} ({shown}); "
            "use another directory or overwrite"
        )


def _run_groups(
    plan: NightPlan,
    stop_event: threading.Event | None,
    on_file: FileCallback | None,
) -> tuple[list[GroupResult], bool]:
    """Write the observations in turn, paced; return what was written and whether stopped."""
    opts = plan.opts
    pacer = Pacer(opts.writer.cadence_s, stop_event)
    results: list[GroupResult] = []
    for k, gt in enumerate(plan.truth.groups):
        if not pacer.wait(k):
            return results, True
        written = write_observation(pending_files(plan, k), opts.writer, stop_event, on_file)
        results.append(
            GroupResult(
                index=k,
                key=gt.key,
                files=tuple(w.path.name for w in written),
                size_bytes=sum(w.size_bytes for w in written),
                contains_calibrator_transit=gt.contains_calibrator_transit,
            )
        )
        logger.info("group %s: %d file(s) written", gt.key, len(written))
        if len(written) < len(gt.files):
            return results, True
    return results, False


def simulate_night(
    opts: SimulationOptions,
    *,
    stop_event: threading.Event | None = None,
    on_file: FileCallback | None = None,
) -> SimulationResult:
    """Simulate ``opts.n_groups`` consecutive observations and write them with their truth.

    ``truth.json`` is written first (atomically), so a consumer can read what is coming.
    With ``opts.writer.cadence_s`` observations are released that many seconds apart in
    real time; ``stop_event`` ends the run after the current file (or append).

    Args:
        opts: The night to simulate.
        stop_event: Set it (e.g. from another thread) to stop early.
        on_file: Called with each file once it is complete under its final name.

    Returns:
        The groups and files written.

    Raises:
        SimulationError: for options that cannot be honoured or existing outputs.
    """
    t_start = time.perf_counter()
    plan = plan_night(opts)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    _check_targets(plan)
    truth_path = opts.out_dir / naming.NIGHT_TRUTH_FILENAME
    write_truth(truth_path, plan.truth)
    results, stopped = _run_groups(plan, stop_event, on_file)
    cal = plan.truth.calibrator
    return SimulationResult(
        out_dir=opts.out_dir,
        truth_path=truth_path,
        groups=tuple(results),
        calibrator_group=cal.transit_group if cal is not None else None,
        n_files=sum(len(r.files) for r in results),
        total_bytes=sum(r.size_bytes for r in results),
        elapsed_s=time.perf_counter() - t_start,
        stopped=stopped,
    )
