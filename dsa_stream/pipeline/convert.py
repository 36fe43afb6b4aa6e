"""The ``convert`` handler: a complete group's subband files -> its Measurement Set.

Pre-flight: every registered file of the group exists with the size and mtime the
registry recorded (a file replaced or removed since registration stops the job:
the input is at fault, the job is dead and the file is marked). The conversion
runs in a child process (python-casacore never shares a process with casatools)
with the job's hard timeout, writes under a per-attempt staging name and renames
into place, or adopts a valid earlier output. The commit registers the ``ms``
product, marks the files consumed and enqueues the group's ``calibrate`` job.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from dsa_stream import naming
from dsa_stream.exceptions import InputFileError, RegistryError
from dsa_stream.pipeline.calibration.stage import calibrate_job
from dsa_stream.pipeline.context import PipelineContext, StageOutcome, StageRun
from dsa_stream.pipeline.products import next_version
from dsa_stream.registry import (
    GroupState,
    GroupUpdate,
    ProductSpec,
    Txn,
    mark_file_missing,
    mark_group_files_consumed,
)
from dsa_stream.registry.models import groups, input_files
from dsa_stream.registry.states import ProductKind
from dsa_stream.toolrun import call_in_subprocess

logger = logging.getLogger(__name__)


class MissingInputError(InputFileError):
    """A registered input file is gone or changed: waiting cannot bring it back."""

    permanent = True


def _group_files(conn: Connection, group_id: int) -> tuple[Any, list[Any]]:
    group = conn.execute(select(groups).where(groups.c.id == group_id)).first()
    if group is None:
        raise RegistryError(f"no group with id {group_id}")
    files = conn.execute(
        select(input_files)
        .where(
            input_files.c.group_id == group_id,
            input_files.c.state.in_(["registered", "consumed"]),
        )
        .order_by(input_files.c.subband)
    ).all()
    return group, list(files)


def _preflight(ctx: PipelineContext, files: list[Any]) -> list[Path]:
    """Absolute paths of the group's files, checked against what was registered."""
    paths = []
    for row in files:
        path = ctx.path(row.root_id, row.rel_path)
        try:
            st = path.stat()
        except FileNotFoundError:
            mark_file_missing(ctx.store, row.root_id, row.rel_path, "gone before conversion")
            raise MissingInputError(f"input file {path} disappeared after registration") from None
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            raise MissingInputError(
                f"input file {path} changed after registration (size {row.size} -> {st.st_size})"
            )
        paths.append(path)
    if not paths:
        raise MissingInputError("the group has no registered input files")
    return paths


def convert_options(ctx: PipelineContext, n_subbands: int) -> dict[str, Any]:
    """The conversion options of the site, as JSON for the child process."""
    from dsa_stream.conversion.options import ConvertOptions

    cfg = ctx.settings.convert
    opts = ConvertOptions(
        mode="midpoint",
        channel_average=cfg.channel_average,
        weight_spectrum=cfg.weight_spectrum,
        expected_subbands=n_subbands,
        checksum_inputs=cfg.checksum_inputs,
        read_threads=cfg.read_threads,
    )
    return opts.model_dump(mode="json")


def convert_in_child(files: list[str], out_ms: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`~dsa_stream.conversion.convert_group` (entry point of the child)."""
    from dsa_stream.conversion import ConvertOptions, convert_group

    result = convert_group([Path(f) for f in files], Path(out_ms), ConvertOptions(**options))
    return result.model_dump(mode="json")


def manifest_hash(ms: Path) -> str:
    """SHA-256 of the MS's conversion manifest (the product's identity)."""
    from dsa_stream.conversion.staging import read_manifest

    doc = read_manifest(ms)
    if doc is None:
        raise RegistryError(f"{ms} has no readable conversion manifest")
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _time(mjd: float) -> datetime:
    """UTC datetime of an MJD (observation time from the data)."""
    from astropy.time import Time

    return Time(mjd, format="mjd", scale="utc").to_datetime(timezone=UTC)


def convert_handler(ctx: PipelineContext, run: StageRun) -> StageOutcome:
    """Handler of ``convert`` jobs (module docstring)."""
    claim = run.claim
    if claim.group_id is None:
        raise RegistryError(f"convert job {claim.job_id} has no group")
    with ctx.store.engine.connect() as conn:
        group, files = _group_files(conn, claim.group_id)
        version = next_version(conn, str(ProductKind.MS), f"ms:{group.group_key}")
    paths = _preflight(ctx, files)
    rel = f"{naming.MS_DIRNAME}/{naming.ms_filename(group.group_key)}"
    out = ctx.path("staging", rel)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = call_in_subprocess(
        f"{__name__}:convert_in_child",
        {
            "files": [str(p) for p in paths],
            "out_ms": str(out),
            "options": convert_options(ctx, group.n_expected),
        },
        timeout_s=claim.timeout_s,
        log_path=run.log_path,
        cancel=run.cancel,
        label=f"convert {group.group_key}",
    )
    product = ProductSpec(
        kind=str(ProductKind.MS),
        logical_key=f"ms:{group.group_key}",
        version=version,
        root_id="staging",
        rel_path=rel,
        manifest_hash=manifest_hash(out),
        obs_start=_time(result["time_start_mjd"]),
        obs_end=_time(result["time_end_mjd"]),
        group_id=group.id,
    )

    def consume(txn: Txn) -> None:
        mark_group_files_consumed(txn, group.id)

    missing = result.get("subbands_missing") or []
    detail = (
        f"{'adopted' if result.get('adopted') else 'converted'} {result['n_rows']} rows, "
        f"{result['n_channels']} channels" + (f", subbands missing {missing}" if missing else "")
    )
    logger.info("group %s: %s -> %s", group.group_key, detail, out)
    return StageOutcome(
        products=(product,),
        next_jobs=(calibrate_job(group.id, group.group_key, group.obs_time, "converted"),),
        group_update=GroupUpdate(
            group_id=group.id, state=GroupState.PROCESSING, stage="converted", reason=detail
        ),
        in_transaction=consume,
        detail=detail,
    )
