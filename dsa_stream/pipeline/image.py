"""The ``image`` handler: a calibrated group MS -> image set, QA, and the mosaic planner.

Pre-flight: the MS the calibrate job named exists and is the registered product.
The imager (:func:`dsa_stream.imaging.image_ms`) runs in a child process group with
the job's hard timeout, writing into ``staging/images/.<key>_v<n>.<token>.partial``;
the directory is renamed to ``<key>_v<n>`` only once every file is there (the
summary JSON is written last). The commit registers the ``image`` product with its
QA verdict and figures and its lineage (MS, calibration tables), enqueues its
``publish`` job, and re-plans the mosaic windows around the group in the same
transaction (:func:`dsa_stream.pipeline.windows.plan_and_enqueue`). A failed QA is
recorded on the product and keeps the group out of mosaics; it is not an error.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from dsa_stream import naming
from dsa_stream.exceptions import ImagingError, RegistryError
from dsa_stream.pipeline import expected
from dsa_stream.pipeline.context import PipelineContext, StageOutcome, StageRun, payload
from dsa_stream.pipeline.products import StagedOutput, next_version
from dsa_stream.pipeline.windows import plan_and_enqueue
from dsa_stream.products.manifest import build_manifest
from dsa_stream.registry import GroupState, GroupUpdate, JobKind, JobSpec, ProductSpec, Txn
from dsa_stream.registry.models import groups, products
from dsa_stream.registry.states import ProductKind, QaStatus
from dsa_stream.toolrun import call_in_subprocess

logger = logging.getLogger(__name__)

#: No DSA-110 image can hold more than this (Jy/beam; Cyg A is ~1.6 kJy at 1.4 GHz):
#: a larger or non-finite peak or rms means a diverged deconvolution, whatever QA said.
PLAUSIBLE_MAX_JY = 1.0e5


def image_in_child(
    ms: str,
    out_prefix: str,
    options: dict[str, Any],
    expected_sources: list[dict[str, Any]],
    calibration: list[dict[str, Any]],
    group_key: str,
    config_hash: str,
) -> dict[str, Any]:
    """Run :func:`~dsa_stream.imaging.image_ms` (entry point of the child process)."""
    from dsa_stream.imaging import CalibrationRecord, ExpectedSource, ImagingOptions, image_ms

    result = image_ms(
        Path(ms),
        Path(out_prefix),
        ImagingOptions.model_validate(options),
        expected=[ExpectedSource.model_validate(s) for s in expected_sources],
        calibration=[CalibrationRecord.model_validate(c) for c in calibration],
        group_key=group_key,
        config_hash=config_hash,
    )
    return result.model_dump(mode="json")


def _ms_product(ctx: PipelineContext, conn: Connection, group_id: int, ms: dict[str, str]) -> Any:
    row = conn.execute(
        select(products)
        .where(
            products.c.group_id == group_id,
            products.c.kind == str(ProductKind.MS),
            products.c.root_id == ms["root_id"],
            products.c.rel_path == ms["rel_path"],
        )
        .order_by(products.c.version.desc())
        .limit(1)
    ).first()
    if row is None:
        raise RegistryError(
            f"the MS {ms['rel_path']} of group {group_id} is not a registered product"
        )
    path = ctx.path(row.root_id, row.rel_path)
    if not (path / "table.dat").is_file():
        raise ImagingError(f"the group's MS {path} is missing or incomplete")
    return row


def _caltable_ids(ctx: PipelineContext, conn: Connection, tables: list[str]) -> list[int]:
    """Product ids of the calibration tables applied (by their registered paths)."""
    ids = []
    for table in tables:
        path = Path(table)
        for root_id, root in ctx.roots.items():
            try:
                rel = str(path.resolve().relative_to(root.resolve()))
            except ValueError:
                continue
            row = conn.execute(
                select(products.c.id).where(
                    products.c.kind == str(ProductKind.CALTABLE),
                    products.c.root_id == root_id,
                    products.c.rel_path == rel,
                )
            ).first()
            if row is not None:
                ids.append(int(row.id))
            break
    return ids


def _calibration_records(tables: list[str]) -> list[dict[str, Any]]:
    return [{"path": t, "source": "given"} for t in tables]


def publish_job(
    kind: str, logical_key: str, version: int, order_key: datetime, **ids: Any
) -> JobSpec:
    """The ``publish`` job (finalize + publish) of a product version."""
    return JobSpec(
        kind=JobKind.PUBLISH,
        dedupe_key=f"publish:{logical_key}:v{version}"[:255],
        order_key=order_key,
        payload={"kind": kind, "logical_key": logical_key, "version": version},
        **ids,
    )


def _mjd(value: float) -> datetime:
    from astropy.time import Time

    return Time(value, format="mjd", scale="utc").to_datetime(timezone=UTC)


def _qa_figures(result: dict[str, Any]) -> dict[str, Any]:
    qa = result["qa"]
    return {
        "backend": result["backend"],
        "rms_jy": qa["rms_jy"],
        "peak_jy": qa["peak_jy"],
        "dynamic_range": qa["dynamic_range"],
        "beam_arcsec": [qa["beam"]["bmaj_arcsec"], qa["beam"]["bmin_arcsec"]],
        "n_checked": qa["n_checked"],
        "flux_ratio_median": qa["flux_ratio_median"],
        "position_offset_median_beams": qa["position_offset_median_beams"],
        "failed_checks": [c["name"] for c in qa["checks"] if not c.get("passed", True)],
        "imager_s": result.get("timings_s", {}).get("imager"),
    }


def image_handler(ctx: PipelineContext, run: StageRun) -> StageOutcome:
    """Handler of ``image`` jobs (module docstring)."""
    claim = run.claim
    if claim.group_id is None:
        raise RegistryError(f"image job {claim.job_id} has no group")
    ms_ref = payload(claim, "ms")
    if not ms_ref:
        raise RegistryError(f"image job {claim.job_id} names no MS")
    tables = [str(t) for t in payload(claim, "calibration_tables", [])]
    with ctx.store.engine.connect() as conn:
        group = conn.execute(select(groups).where(groups.c.id == claim.group_id)).one()
        ms_row = _ms_product(ctx, conn, group.id, ms_ref)
        cal_ids = _caltable_ids(ctx, conn, tables)
        key = f"image:{group.group_key}"
        version = next_version(conn, str(ProductKind.IMAGE), key)
    ms_path = ctx.path(ms_row.root_id, ms_row.rel_path)
    rel = f"{naming.IMAGES_DIRNAME}/{naming.image_set_dirname(group.group_key, version)}"
    staged = StagedOutput(ctx.path("staging", rel), run.token)
    work = staged.begin()
    options = ctx.settings.image.model_copy(
        update={"data_column": payload(claim, "data_column", "auto")}
    )
    catalog = ctx.settings.products.catalog_path(ctx.settings.paths.root)
    sources = expected.for_image(catalog, group.group_key)
    try:
        result = call_in_subprocess(
            f"{__name__}:image_in_child",
            {
                "ms": str(ms_path),
                "out_prefix": str(work / naming.image_stem(group.group_key)),
                "options": options.model_dump(mode="json"),
                "expected_sources": [s.model_dump(mode="json") for s in sources],
                "calibration": _calibration_records(tables),
                "group_key": group.group_key,
                "config_hash": ctx.settings.config_hash(),
            },
            timeout_s=claim.timeout_s,
            log_path=run.log_path,
            cancel=run.cancel,
            label=f"image {group.group_key}",
        )
    except BaseException:
        staged.abandon()
        raise
    final = staged.commit()
    manifest = build_manifest(final)
    qa = _qa_figures(result)
    implausible = [
        name
        for name in ("rms_jy", "peak_jy")
        if not (math.isfinite(qa[name]) and abs(qa[name]) < PLAUSIBLE_MAX_JY)
    ]
    if implausible:
        qa["failed_checks"] += [f"implausible {n} (diverged deconvolution?)" for n in implausible]
    passed = bool(result["qa"]["passed"]) and not implausible
    obs_start, obs_end = _mjd(result["time_start_mjd"]), _mjd(result["time_end_mjd"])
    product = ProductSpec(
        kind=str(ProductKind.IMAGE),
        logical_key=key,
        version=version,
        root_id="staging",
        rel_path=rel,
        manifest_hash=manifest.digest(),
        obs_start=obs_start,
        obs_end=obs_end,
        group_id=group.id,
        parents=(int(ms_row.id), *cal_ids),
        qa_status=QaStatus.PASSED if passed else QaStatus.FAILED,
        qa=qa,
    )
    if not passed:
        logger.warning("group %s: image QA failed: %s", group.group_key, qa["failed_checks"])
    else:
        logger.info(
            "group %s: imaged (rms %.3g Jy/beam, peak %.3g Jy/beam, %d sources checked)",
            group.group_key,
            qa["rms_jy"],
            qa["peak_jy"],
            qa["n_checked"],
        )

    def replan(txn: Txn) -> None:
        plan_and_enqueue(txn, ctx.settings, obs_start)

    next_jobs = ()
    if "image" in ctx.settings.products.publish_kinds:
        next_jobs = (
            publish_job(str(ProductKind.IMAGE), key, version, obs_start, group_id=group.id),
        )
    return StageOutcome(
        products=(product,),
        next_jobs=next_jobs,
        group_update=GroupUpdate(
            group_id=group.id,
            state=GroupState.DONE,
            stage="imaged" if passed else "image_qa_failed",
            reason=None if passed else "image QA failed: " + ", ".join(qa["failed_checks"]),
        ),
        in_transaction=replan,
        detail=f"image v{version}: QA {'passed' if passed else 'FAILED'}, rms {qa['rms_jy']:.3g}",
    )
