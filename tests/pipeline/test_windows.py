"""Mosaic windows in the registry: planned after each image, enqueued when ready.

No imaging here: groups and image products are written straight into a real SQLite
registry, in a shuffled order, and :func:`plan_and_enqueue` runs as the image commit
would run it.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from dsa_stream import instrument
from dsa_stream.pipeline.calibration.records import manual_job
from dsa_stream.pipeline.context import PipelineContext
from dsa_stream.pipeline.windows import mark_built, plan_and_enqueue
from dsa_stream.registry import ProductSpec
from dsa_stream.registry.models import groups, jobs, mosaic_windows
from dsa_stream.registry.states import QaStatus

T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
STEP = timedelta(seconds=instrument.OBSERVATION_S)


def _key(k: int) -> str:
    return (T0 + k * STEP).strftime("%Y-%m-%dT%H:%M:%S")


def _image(ctx: PipelineContext, k: int, *, passed: bool = True, version: int = 1) -> None:
    """Register group k (if new) and an image of it, then plan as the image commit does."""
    start = T0 + k * STEP
    with ctx.store.transaction() as txn:
        gid = txn.conn.execute(select(groups.c.id).where(groups.c.group_key == _key(k))).scalar()
        if gid is None:
            gid = txn.conn.execute(
                insert(groups)
                .values(
                    group_key=_key(k),
                    obs_time=start,
                    dec_deg=54.6,
                    state="processing",
                    first_seen_at=txn.now,
                    updated_at=txn.now,
                )
                .returning(groups.c.id)
            ).scalar_one()
        job_id, token = manual_job(
            txn, dedupe_key=f"image:{_key(k)}:v{version}", order_key=start, group_id=gid, detail="t"
        )
        txn.add_product(
            ProductSpec(
                kind="image",
                logical_key=f"image:{_key(k)}",
                version=version,
                root_id="staging",
                rel_path=f"images/{_key(k)}_v{version}",
                manifest_hash="x",
                obs_start=start,
                obs_end=start + STEP,
                group_id=gid,
                qa_status=QaStatus.PASSED if passed else QaStatus.FAILED,
            ),
            job_id=job_id,
            lease_token=token,
        )
        plan_and_enqueue(txn, ctx.settings, start)


def _mosaic_rows(ctx: PipelineContext) -> list[Any]:
    with ctx.store.engine.connect() as conn:
        return list(
            conn.execute(
                select(jobs.c.dedupe_key, jobs.c.payload, jobs.c.window_id)
                .where(jobs.c.kind == "mosaic")
                .order_by(jobs.c.id)
            ).all()
        )


def _mosaic_jobs(ctx: PipelineContext) -> list[tuple[str, list[str]]]:
    return [
        (r.dedupe_key, [m["group_key"] for m in r.payload["members"]]) for r in _mosaic_rows(ctx)
    ]


def test_ten_images_in_any_order_make_one_mosaic_job(site_ctx: PipelineContext) -> None:
    order = list(range(12))
    random.Random(3).shuffle(order)
    for k in order:
        _image(site_ctx, k)
    (job,) = _mosaic_jobs(site_ctx)
    assert job[0] == f"mosaic:{_key(0)}:v1"
    assert job[1] == [_key(k) for k in range(10)]  # observation order, not arrival
    with site_ctx.store.engine.connect() as conn:
        states = dict(
            conn.execute(select(mosaic_windows.c.window_key, mosaic_windows.c.state)).all()
        )
    assert states[_key(0)] == "mosaicking" and states[_key(8)] == "open"


def test_a_failed_image_keeps_the_window_waiting(site_ctx: PipelineContext) -> None:
    for k in range(10):
        _image(site_ctx, k, passed=k != 4)
    assert _mosaic_jobs(site_ctx) == []
    _image(site_ctx, 4, version=2)  # re-imaged, QA passed
    assert [j[0] for j in _mosaic_jobs(site_ctx)] == [f"mosaic:{_key(0)}:v1"]


def test_a_late_first_group_builds_version_two(site_ctx: PipelineContext) -> None:
    for k in range(1, 14):  # group 0 is late
        _image(site_ctx, k)
    (first,) = _mosaic_rows(site_ctx)
    assert first.dedupe_key == f"mosaic:{_key(1)}:v1"
    with site_ctx.store.transaction() as txn:
        mark_built(txn, first.window_id, 1, first.payload["members"])
    _image(site_ctx, 0)  # the late group arrives and is imaged
    rows = _mosaic_rows(site_ctx)
    assert [r.dedupe_key for r in rows] == [f"mosaic:{_key(1)}:v1", f"mosaic:{_key(1)}:v2"]
    assert [m["group_key"] for m in rows[1].payload["members"]] == [_key(k) for k in range(11)]
    assert rows[1].payload["changes"] == [f"late member {_key(0)}"]
