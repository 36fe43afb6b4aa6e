"""The ``mosaic`` handler: a ready window version -> PB-weighted mosaic, QA, lineage.

Pre-flight: every member the planner listed is a registered image whose QA passed
and whose files are where the registry says (staging, or products once published).
The coadd (:func:`dsa_stream.mosaic.build_mosaic`) runs in a child process group with
the job's hard timeout, writing into ``staging/mosaics/.<stem>.<token>.partial``,
renamed to ``mosaic_<window>_v<n>`` when complete. The commit registers the
``mosaic`` product (lineage to every member image, QA verdict and figures), marks
the window version built with its members, and enqueues its ``publish`` job.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dsa_stream import naming
from dsa_stream.exceptions import MosaicError, RegistryError
from dsa_stream.pipeline.context import PipelineContext, StageOutcome, StageRun, payload
from dsa_stream.pipeline.image import publish_job
from dsa_stream.pipeline.products import StagedOutput, current_path
from dsa_stream.pipeline.windows import mark_built
from dsa_stream.products.manifest import build_manifest
from dsa_stream.registry import ProductSpec, Txn
from dsa_stream.registry.models import products
from dsa_stream.registry.states import ProductKind, QaStatus
from dsa_stream.toolrun import call_in_subprocess

logger = logging.getLogger(__name__)


def mosaic_in_child(
    tiles: list[dict[str, Any]],
    out_prefix: str,
    options: dict[str, Any],
    catalog: str | None,
    window_key: str,
    version: int,
    config_hash: str,
) -> dict[str, Any]:
    """Coadd the tiles and write the mosaic (entry point of the child process)."""
    import statistics

    from dsa_stream.mosaic import MosaicOptions, build_mosaic, tile_from_fits
    from dsa_stream.mosaic.fitsio import read_info
    from dsa_stream.pipeline.expected import REF_FREQ_HZ, for_mosaic

    made = [
        tile_from_fits(
            Path(t["image"]),
            Path(t["beam"]),
            group_key=t["group_key"],
            image_id=t["image_id"],
            rms_jy=t["rms_jy"],
        )
        for t in tiles
    ]
    freqs = [f for t in made if (f := read_info(t.image_path).freq_hz) is not None]
    freq = statistics.median(freqs) if freqs else REF_FREQ_HZ
    result = build_mosaic(
        made,
        Path(out_prefix),
        MosaicOptions.model_validate(options),
        window_key=window_key,
        version=version,
        config_hash=config_hash,
        expected_sources=for_mosaic(Path(catalog) if catalog else None, freq),
    )
    return result.model_dump(mode="json")


def _image_id(member: dict[str, Any]) -> int:
    text = str(member.get("image_id") or "")
    if not text.startswith("image:"):
        raise RegistryError(f"window member {member.get('group_key')} has no registered image")
    return int(text.split(":", 1)[1])


def _tiles(ctx: PipelineContext, members: list[dict[str, Any]]) -> tuple[list[dict], list[int]]:
    tiles, ids = [], []
    with ctx.store.engine.connect() as conn:
        for m in members:
            pid = _image_id(m)
            row = conn.execute(select(products).where(products.c.id == pid)).first()
            if row is None or row.kind != str(ProductKind.IMAGE):
                raise RegistryError(
                    f"member {m['group_key']}: image product {pid} is not registered"
                )
            if row.qa_status != str(QaStatus.PASSED):
                raise MosaicError(f"member {m['group_key']}: image {pid} did not pass QA")
            where = current_path(row, ctx.path)
            stem = naming.image_stem(m["group_key"])
            image = where / naming.format_image_product(naming.ImageProductName(stem, "image"))
            beam = where / naming.format_image_product(naming.ImageProductName(stem, "pb"))
            for f in (image, beam):
                if not f.is_file():
                    raise MosaicError(f"member {m['group_key']}: {f} is missing")
            tiles.append(
                {
                    "group_key": m["group_key"],
                    "image": str(image),
                    "beam": str(beam),
                    "image_id": m["image_id"],
                    "rms_jy": (row.qa or {}).get("rms_jy"),
                }
            )
            ids.append(pid)
    return tiles, ids


def _qa_figures(qa: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "n_members",
        "coverage_fraction",
        "peak_jy",
        "dynamic_range",
        "noise_measured_jy",
        "noise_ratio",
        "n_sources_checked",
        "n_sources_found",
        "flux_ratio_median",
        "offset_beams_median",
    )
    out = {k: qa.get(k) for k in keys}
    out["failures"] = list(qa.get("failures", []))
    return out


def mosaic_handler(ctx: PipelineContext, run: StageRun) -> StageOutcome:
    """Handler of ``mosaic`` jobs (module docstring)."""
    claim = run.claim
    window_key = str(payload(claim, "window_key"))
    version = int(payload(claim, "version", 1))
    members = list(payload(claim, "members", []))
    if claim.window_id is None or not members:
        raise RegistryError(f"mosaic job {claim.job_id} has no window or no members")
    tiles, image_ids = _tiles(ctx, members)
    name = naming.format_mosaic_stem(naming.MosaicName(window_key, version))
    rel = f"{naming.MOSAICS_DIRNAME}/{name}"
    staged = StagedOutput(ctx.path("staging", rel), run.token)
    work = staged.begin()
    catalog = ctx.settings.products.catalog_path(ctx.settings.paths.root)
    try:
        result = call_in_subprocess(
            f"{__name__}:mosaic_in_child",
            {
                "tiles": tiles,
                "out_prefix": str(work / name),
                "options": ctx.settings.mosaic.model_dump(mode="json"),
                "catalog": str(catalog) if catalog else None,
                "window_key": window_key,
                "version": version,
                "config_hash": ctx.settings.config_hash(),
            },
            timeout_s=claim.timeout_s,
            log_path=run.log_path,
            cancel=run.cancel,
            label=f"mosaic {name}",
        )
    except BaseException:
        staged.abandon()
        raise
    final = staged.commit()
    qa = _qa_figures(result["qa"])
    passed = bool(result["qa"]["passed"])
    obs_start = datetime.fromisoformat(result["obs_start"])
    product = ProductSpec(
        kind=str(ProductKind.MOSAIC),
        logical_key=f"mosaic:{window_key}",
        version=version,
        root_id="staging",
        rel_path=rel,
        manifest_hash=build_manifest(final).digest(),
        obs_start=obs_start,
        obs_end=datetime.fromisoformat(result["obs_end"]),
        window_id=claim.window_id,
        parents=tuple(image_ids),
        qa_status=QaStatus.PASSED if passed else QaStatus.FAILED,
        qa=qa,
    )
    log = logger.info if passed else logger.warning
    log(
        "mosaic %s: QA %s (%d members, flux ratio %s, offset %s beam)",
        name,
        "passed" if passed else "FAILED: " + "; ".join(qa["failures"]),
        len(tiles),
        qa["flux_ratio_median"],
        qa["offset_beams_median"],
    )
    window_id = claim.window_id

    def built(txn: Txn) -> None:
        mark_built(txn, window_id, version, members)

    next_jobs = ()
    if "mosaic" in ctx.settings.products.publish_kinds:
        next_jobs = (
            publish_job(
                str(ProductKind.MOSAIC),
                f"mosaic:{window_key}",
                version,
                obs_start,
                window_id=window_id,
            ),
        )
    return StageOutcome(
        products=(product,),
        next_jobs=next_jobs,
        in_transaction=built,
        detail=f"{name}: {len(tiles)} images, QA {'passed' if passed else 'FAILED'}",
    )
