"""Reconcile on a small site: orphans and companions, dead partials, a lost product."""

from __future__ import annotations

from datetime import UTC, datetime

from dsa_stream.pipeline.calibration.records import manual_job
from dsa_stream.pipeline.context import PipelineContext
from dsa_stream.pipeline.reconcile import reconcile
from dsa_stream.products.manifest import build_manifest
from dsa_stream.registry import ProductSpec

T0 = datetime(2026, 4, 1, 2, tzinfo=UTC)
KEY = "2026-04-01T02:00:00"


def _image_product(ctx: PipelineContext) -> None:
    staged = ctx.path("staging", f"images/{KEY}_v1")
    staged.mkdir(parents=True)
    (staged / f"{KEY}.image.json").write_text("{}\n")
    with ctx.store.transaction() as txn:
        job_id, token = manual_job(
            txn, dedupe_key=f"image:{KEY}", order_key=T0, group_id=None, detail="t"
        )
        txn.add_product(
            ProductSpec(
                kind="image",
                logical_key=f"image:{KEY}",
                root_id="staging",
                rel_path=f"images/{KEY}_v1",
                manifest_hash=build_manifest(staged).digest(),
                obs_start=T0,
                obs_end=T0,
            ),
            job_id=job_id,
            lease_token=token,
        )


def test_companions_are_not_orphans_and_partials_are_removed(site_ctx: PipelineContext) -> None:
    _image_product(site_ctx)
    images = site_ctx.path("staging", "images")
    (images / f"{KEY}_v1.extra.log").write_text("companion\n")
    (images / f".{KEY}_v2.j99-t1.partial").mkdir()
    (images / "2026-04-01T02:05:00_v1").mkdir()  # no row: an orphan
    report = reconcile(site_ctx)
    kinds = sorted(d.kind for d in report.discrepancies)
    assert kinds == ["orphan", "partial"], report.discrepancies
    reconcile(site_ctx, fix=True)
    assert reconcile(site_ctx).clean
    assert (images / f"{KEY}_v1.extra.log").exists()
    assert not (images / "2026-04-01T02:05:00_v1").exists()
    assert list((site_ctx.roots["quarantine"] / "reconcile").rglob("*.reason.txt"))


def test_a_corrupt_product_is_quarantined_and_its_job_requeued(site_ctx: PipelineContext) -> None:
    _image_product(site_ctx)
    (site_ctx.path("staging", f"images/{KEY}_v1") / f"{KEY}.image.json").write_text("changed\n")
    report = reconcile(site_ctx, fix=True)
    assert [d.kind for d in report.discrepancies] == ["corrupt"]
    with site_ctx.store.engine.connect() as conn:
        from sqlalchemy import select

        from dsa_stream.registry.models import jobs, products

        state = conn.execute(select(products.c.state)).scalar_one()
        redo = conn.execute(select(jobs.c.dedupe_key).where(jobs.c.state == "queued")).all()
    assert state == "cleaned" and [r.dedupe_key for r in redo] == [f"image:{KEY}:redo1"]
    assert reconcile(site_ctx).clean
