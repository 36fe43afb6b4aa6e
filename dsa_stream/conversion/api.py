"""The conversion stage: one group of subband files -> one validated Measurement Set."""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.time import Time

from dsa_stream import __version__
from dsa_stream.conversion.average import average_frequencies
from dsa_stream.conversion.calapply import GainApplier, read_caltable
from dsa_stream.conversion.inputs import GroupInputs, read_group
from dsa_stream.conversion.options import CheckRecord, ConvertOptions, ConvertResult
from dsa_stream.conversion.phasing import PhasingPlan, plan_phasing
from dsa_stream.conversion.staging import (
    attempt_id,
    caltable_fingerprints,
    input_fingerprints,
    inputs_key,
    manifest_mismatch,
    publish,
    quarantine,
    read_manifest,
    remove_stale_partials,
    staging_path,
    write_manifest,
)
from dsa_stream.conversion.validate import Expectation, validate_ms
from dsa_stream.exceptions import ConversionError
from dsa_stream.versions import software_versions

logger = logging.getLogger(__name__)

#: Progress callback: (step name, done, total).
ProgressCallback = Callable[[str, int, int], None]


def expectation(group: GroupInputs, options: ConvertOptions) -> Expectation:
    """What the MS of this group must contain."""
    h = group.first
    times = group.times_jd()
    freqs, _ = average_frequencies(
        group.full_band_hz(), group.channel_width_hz, options.channel_average
    )
    return Expectation(
        times_mjd=np.asarray(Time(times, format="jd", scale="utc").mjd),
        integration_s=float(np.median(h.integration_s)),
        n_rows=int(h.time_jd.size),
        freqs_hz=freqs,
        dec0_rad=h.dec_rad,
        mode=options.mode,
        n_pols=int(h.pols.size),
    )


def _history(
    group: GroupInputs, options: ConvertOptions, plan: PhasingPlan, applied: list[str]
) -> str:
    centre = (
        f"ICRS ({plan.field_icrs_deg[0]:.6f}, {plan.field_icrs_deg[1]:.6f}) deg"
        if plan.field_icrs_deg
        else "one field per integration at its meridian centre"
    )
    lines = [
        f"dsa-stream {__version__} convert: {len(group.headers)} subband file(s) "
        f"({', '.join(h.path.name for h in group.headers)}); missing subbands "
        f"{list(group.missing) or 'none'} (flagged).",
        f"Phasing: mode {options.mode}, {centre}; pointing Dec "
        f"{math.degrees(plan.dec0_rad):.6f} deg (apparent).",
        f"Channel average {options.channel_average}; autocorrelations "
        f"{'flagged' if options.flag_autocorrelations else 'kept'}.",
        "Calibration applied on the fly: " + ("; ".join(applied) if applied else "none") + ".",
    ]
    return "\n".join(lines)


def _load_applier(
    options: ConvertOptions, plan: PhasingPlan
) -> tuple[GainApplier | None, list[Any]]:
    if not options.apply_tables:
        return None, []
    names = [str(n) for n in plan.uv.telescope.antenna_names]
    numbers = np.asarray(plan.uv.telescope.antenna_numbers)
    ordered = [""] * (int(numbers.max()) + 1)
    for num, name in zip(numbers, names, strict=True):
        ordered[int(num)] = name
    freqs = np.asarray(plan.uv.freq_array, dtype=np.float64)
    tabs = [read_caltable(Path(p), ordered, freqs) for p in options.apply_tables]
    pols = [int(p) for p in plan.uv.polarization_array]
    from pyuvdata.utils.pol import determine_pol_order

    order = determine_pol_order(plan.uv.polarization_array, order="CASA")
    return GainApplier(tabs, [pols[i] for i in order]), [t.info for t in tabs]


def _write_attempt(
    group: GroupInputs,
    staging: Path,
    options: ConvertOptions,
    progress: ProgressCallback | None,
) -> tuple[dict[str, Any], PhasingPlan, list[CheckRecord], dict[str, float]]:
    from dsa_stream.conversion.msio import write_main, write_subtables

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    plan = plan_phasing(group, options)
    applier, applied = _load_applier(options, plan)
    timings["phasing"] = time.perf_counter() - t0

    def rows(done: int, total: int) -> None:
        if progress is not None:
            progress("writing", done, total)

    stats = write_main(staging, group, plan, options, applier, rows)
    timings["read_rephase"] = stats.seconds_read
    timings["write_main"] = stats.seconds_write
    t1 = time.perf_counter()
    write_subtables(
        staging, plan, _history(group, options, plan, [f"{a.path} ({a.type})" for a in applied])
    )
    timings["subtables"] = time.perf_counter() - t1
    if progress is not None:
        progress("validating", 0, 1)
    t2 = time.perf_counter()
    checks = validate_ms(staging, expectation(group, options), options.validation)
    timings["validate"] = time.perf_counter() - t2
    info = {
        "n_rows": stats.n_rows,
        "n_channels": stats.n_channels,
        "channel_width_hz": stats.channel_width_hz,
        "freq_min_hz": float(stats.freqs_hz.min()),
        "freq_max_hz": float(stats.freqs_hz.max()),
        "applied": applied,
    }
    return info, plan, checks, timings


def _result(
    out: Path,
    group: GroupInputs,
    options: ConvertOptions,
    info: dict[str, Any],
    plan: PhasingPlan,
    checks: list[CheckRecord],
) -> ConvertResult:
    h = group.first
    tint = float(np.median(h.integration_s))
    warnings = tuple(f"{c.name}: {c.detail}" for c in checks if c.status == "warning")
    if group.missing:
        warnings += (f"subbands missing (flagged): {list(group.missing)}",)
    return ConvertResult(
        ms_path=out,
        adopted=False,
        mode=options.mode,
        phase_center_name=plan.field_name,
        phase_center_deg=plan.field_icrs_deg,
        pointing_dec_deg=math.degrees(h.dec_rad),
        meridian_centres=plan.centres,
        input_files=tuple(x.path.resolve() for x in group.headers),
        subbands_present=group.subbands,
        subbands_missing=group.missing,
        n_rows=info["n_rows"],
        n_times=len(plan.centres),
        n_baselines=info["n_rows"] // len(plan.centres),
        n_antennas_data=int(np.unique(np.concatenate([h.ant1, h.ant2])).size),
        n_channels=info["n_channels"],
        channel_width_hz=info["channel_width_hz"],
        freq_min_hz=info["freq_min_hz"],
        freq_max_hz=info["freq_max_hz"],
        channel_average=options.channel_average,
        time_start_mjd=plan.centres[0].time_mjd - tint / 2 / 86400.0,
        time_end_mjd=plan.centres[-1].time_mjd + tint / 2 / 86400.0,
        integration_s=tint,
        applied_tables=tuple(info["applied"]),
        checks=tuple(checks),
        warnings=warnings,
        options_hash=options.content_hash(),
        software=software_versions(include_external=False),
    )


def _fingerprints(group: GroupInputs, options: ConvertOptions) -> list[dict[str, Any]]:
    return input_fingerprints(group, options.checksum_inputs) + caltable_fingerprints(
        Path(p) for p in options.apply_tables
    )


def adopt_existing(
    files: Sequence[str | Path], out_ms: str | Path, options: ConvertOptions | None = None
) -> ConvertResult | None:
    """The existing ``out_ms`` as a result if it can be adopted for these inputs, else None.

    Nothing is moved or written: this is the decision :func:`convert_group` takes with
    ``on_existing='adopt'`` (manifest matches the inputs, the calibration tables and the
    options, and the MS validates).
    """
    options = options or ConvertOptions()
    out = Path(out_ms).absolute()
    if not out.exists():
        return None
    group = read_group(files, options.expected_subbands)
    result, _reason = _adopt(group, out, options, inputs_key(_fingerprints(group, options)))
    return result


def _adopt(
    group: GroupInputs, out: Path, options: ConvertOptions, key: str
) -> tuple[ConvertResult | None, str]:
    """Adopt ``out`` if its manifest matches and it validates; else (None, reason)."""
    manifest = read_manifest(out)
    reason = manifest_mismatch(manifest, key, options.content_hash())
    if reason is not None:
        return None, reason
    assert manifest is not None
    try:
        checks = validate_ms(out, expectation(group, options), options.validation)
    except ConversionError as exc:
        logger.warning("existing %s does not validate: %s", out, exc)
        return None, "invalid"
    try:
        previous = ConvertResult.model_validate(manifest["result"])
    except ValueError:
        return None, "manifest-unreadable"
    logger.info("adopting existing %s (manifest and validation match)", out)
    return previous.model_copy(
        update={"adopted": True, "checks": tuple(checks), "ms_path": out}
    ), ""


def convert_group(
    files: Sequence[str | Path],
    out_ms: str | Path,
    options: ConvertOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> ConvertResult:
    """Convert one group of subband files into one validated Measurement Set.

    Crash-safe: the MS is written under a per-attempt staging name, checked, given a
    manifest and renamed into place. An existing destination is handled by
    ``options.on_existing`` (adopt it when its manifest matches these inputs and
    options and it validates, else move it aside and convert again).

    Args:
        files: The subband files of one observation (any order; missing subbands allowed,
            they are flagged in the output).
        out_ms: Destination Measurement Set directory.
        options: Conversion options (defaults: midpoint phasing, no averaging).
        progress: Called with (step, done, total) while writing.

    Returns:
        What was written or adopted.

    Raises:
        InputFileError: the inputs are missing, unreadable or inconsistent.
        ConversionError: conversion or a post-conversion check failed.
    """
    options = options or ConvertOptions()
    out = Path(out_ms).absolute()
    t_start = time.perf_counter()
    group = read_group(files, options.expected_subbands)
    fingerprints = _fingerprints(group, options)
    key = inputs_key(fingerprints)
    t_inputs = time.perf_counter() - t_start
    quarantined: Path | None = None
    if out.exists() or out.is_symlink():
        if options.on_existing == "fail":
            raise ConversionError(f"{out} already exists (on_existing='fail')")
        reason = "replace"
        if options.on_existing == "adopt":
            adopted, reason = _adopt(group, out, options, key)
            if adopted is not None:
                return adopted
        quarantined = quarantine(out, reason)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    staging = staging_path(out, attempt_id())
    try:
        info, plan, checks, timings = _write_attempt(group, staging, options, progress)
        result = _result(out, group, options, info, plan, checks)
        write_manifest(
            staging,
            {
                "inputs": fingerprints,
                "inputs_key": key,
                "options_hash": options.content_hash(),
                "options": options.model_dump(mode="json"),
                "software": result.software,
                "n_rows": result.n_rows,
                "result": result.model_dump(mode="json"),
            },
        )
        t_pub = time.perf_counter()
        publish(staging, out)
        timings["manifest_fsync_rename"] = time.perf_counter() - t_pub
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    from dsa_stream.conversion.msio import directory_size

    timings["inputs"] = t_inputs
    timings["total"] = time.perf_counter() - t_start
    logger.info(
        "converted %d subband(s) into %s in %.1f s", len(group.headers), out, timings["total"]
    )
    return result.model_copy(
        update={"quarantined": quarantined, "size_bytes": directory_size(out), "timings_s": timings}
    )
