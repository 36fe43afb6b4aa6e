"""The calibrate handler without CASA: waiting, the uncalibrated policy, quarantine.

A target group (no calibrator transit) with no registered set: with policy ``wait``
it stays ``processing`` at stage ``awaiting_calibration`` and gets no image job; with
``image-uncalibrated`` it goes on, its image job saying ``calibrated: false``; a group
whose MS has no readable time is quarantined. SQLite and PostgreSQL.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from casacore import tables
from sqlalchemy import insert, select

from dsa_stream.config import load_settings
from dsa_stream.conversion import convert_group
from dsa_stream.pipeline.calibration import (
    AWAITING_CALIBRATION,
    UNCALIBRATED,
    Roots,
    calibrate_handler,
    calibrate_job,
    manual_job,
)
from dsa_stream.pipeline.context import PipelineContext, StageRun
from dsa_stream.registry import JobStore, ProductSpec, WorkerIdentity, make_engine
from dsa_stream.registry.models import groups, jobs

from .conftest import FIELDS, Night


@pytest.fixture(scope="module")
def target_ms(night: Night, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("target") / "g2.ms"
    return convert_group(night.files(2), out, FIELDS).ms_path


def _context(tmp_path: Path, db_url: str, policy: str) -> PipelineContext:
    settings = load_settings(
        overrides={
            "paths": {"root": str(tmp_path / "site")},
            "registry": {"url": db_url},
            "calibrate": {"no_calibration_policy": policy},
        }
    )
    return PipelineContext.create(settings, JobStore(make_engine(db_url), settings.worker))


@pytest.fixture
def ctx_factory(tmp_path: Path, db_url: str) -> Iterator[Any]:
    made: list[PipelineContext] = []

    def make(policy: str = "wait") -> PipelineContext:
        made.append(_context(tmp_path, db_url, policy))
        return made[-1]

    yield make
    for c in made:
        c.store.close()


def _run_job(ctx: PipelineContext, ms: Path, night: Night) -> tuple[Any, int]:
    """Register group 2 with its MS, enqueue + claim its calibrate job, run the handler."""
    g = night.truth.group(2)
    start = datetime.fromisoformat(g.start_utc + "+00:00")
    local = ctx.roots["products"] / "ms" / ms.name
    shutil.copytree(ms, local)
    store = ctx.store
    with store.transaction() as txn:
        gid = txn.conn.execute(
            insert(groups)
            .values(
                group_key=g.key,
                obs_time=start,
                dec_deg=night.truth.pointing_dec_app_deg,
                state="complete",
                first_seen_at=txn.now,
                updated_at=txn.now,
            )
            .returning(groups.c.id)
        ).scalar_one()
        job_id, token = manual_job(
            txn, dedupe_key=f"convert:{g.key}", order_key=start, group_id=gid, detail="test"
        )
        root_id, rel = Roots(roots=ctx.roots).split(local)
        txn.add_product(
            ProductSpec(
                kind="ms",
                logical_key=f"ms:{g.key}",
                root_id=root_id,
                rel_path=rel,
                manifest_hash="t",
                obs_start=start,
                obs_end=start,
                group_id=gid,
            ),
            job_id=job_id,
            lease_token=token,
        )
        txn.enqueue(calibrate_job(gid, g.key, start, "converted"))
    worker = store.start_worker(WorkerIdentity.current("test")).worker_id
    claim = store.claim(worker, kinds=["calibrate"])
    assert claim is not None
    run = StageRun(claim, threading.Event(), ctx.roots["logs"] / "job.log", lambda _p: None)
    outcome = calibrate_handler(ctx, run)
    store.complete(
        claim,
        next_jobs=outcome.next_jobs,
        products=outcome.products,
        group_update=outcome.group_update,
        in_transaction=outcome.in_transaction,
        detail=outcome.detail,
    )
    store.stop_worker(worker)
    return outcome, gid


def _group(ctx: PipelineContext, gid: int) -> Any:
    with ctx.store.engine.connect() as conn:
        return conn.execute(select(groups).where(groups.c.id == gid)).one()


def _image_jobs(ctx: PipelineContext) -> list[Any]:
    with ctx.store.engine.connect() as conn:
        return conn.execute(
            select(jobs.c.dedupe_key, jobs.c.payload).where(jobs.c.kind == "image")
        ).all()


def test_no_tables_means_the_group_waits(ctx_factory: Any, target_ms: Path, night: Night) -> None:
    ctx = ctx_factory("wait")
    outcome, gid = _run_job(ctx, target_ms, night)
    row = _group(ctx, gid)
    assert (row.state, row.stage) == ("processing", AWAITING_CALIBRATION)
    assert row.reason.startswith("waiting for calibration: no valid calibration covers")
    assert outcome.next_jobs == () and _image_jobs(ctx) == []


def test_policy_image_uncalibrated(ctx_factory: Any, target_ms: Path, night: Night) -> None:
    ctx = ctx_factory("image-uncalibrated")
    _outcome, gid = _run_job(ctx, target_ms, night)
    row = _group(ctx, gid)
    assert (row.state, row.stage) == ("processing", UNCALIBRATED)
    assert "uncalibrated by policy" in row.reason
    (image,) = _image_jobs(ctx)
    assert image.payload["calibrated"] is False and image.payload["data_column"] == "DATA"
    assert "calibration_set" not in image.payload


def test_unreadable_observation_time_quarantines(
    ctx_factory: Any, target_ms: Path, night: Night, tmp_path: Path
) -> None:
    broken = Path(shutil.copytree(target_ms, tmp_path / "broken" / "g2.ms"))
    with tables.table(str(broken), readonly=False, ack=False) as tb:
        tb.putcol("TIME", np.zeros(tb.nrows()))
    ctx = ctx_factory("wait")
    _outcome, gid = _run_job(ctx, broken, night)
    row = _group(ctx, gid)
    assert row.state == "quarantined" and "not plausible" in row.reason
    assert _image_jobs(ctx) == []
