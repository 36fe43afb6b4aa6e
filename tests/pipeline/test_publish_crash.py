"""Crash points of the publish stage: after write, fsync, rename and commit.

A worker process runs the ``publish`` job of a committed image and is killed
(``os._exit(137)``, as SIGKILL would) at a named point, by rename (one filesystem)
or by copy (staging and products on different filesystems: products on /dev/shm).
A fresh worker then runs (the dead worker is detected, its job requeued) and
``reconcile --fix`` runs. Every case must end with exactly one published copy whose
checksums match, no partial left, the product ``published`` in the registry, the
publish job succeeded, and a second reconcile that finds nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from sqlalchemy import select

from dsa_stream.config import load_settings
from dsa_stream.pipeline.calibration.records import manual_job
from dsa_stream.pipeline.context import PipelineContext
from dsa_stream.pipeline.image import publish_job
from dsa_stream.pipeline.reconcile import reconcile
from dsa_stream.products.manifest import build_manifest
from dsa_stream.registry import JobStore, ProductSpec
from dsa_stream.registry.models import jobs, products
from dsa_stream.registry.states import QaStatus
from dsa_stream.site import init_site

from .conftest import FAST_WORKER

KEY = "2026-03-01T10:00:00"
NAME = f"{KEY}_v1"
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)

WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    from dsa_stream.config import load_settings
    from dsa_stream.pipeline.context import PipelineContext
    from dsa_stream.pipeline.handlers import default_handlers
    from dsa_stream.pipeline.worker import Worker
    from dsa_stream.registry import JobStore

    settings = load_settings(__import__("pathlib").Path(sys.argv[1]))
    store = JobStore.from_settings(settings)
    ctx = PipelineContext.create(settings, store)
    report = Worker(ctx, default_handlers(), kinds=["publish"], poll_s=0.1).run(burst=True)
    print(report.model_dump_json())
    """
)


def _fits(path: Path) -> None:
    h = fits.Header()
    h.update(
        CTYPE1="RA---SIN",
        CTYPE2="DEC--SIN",
        CRVAL1=150.0,
        CRVAL2=40.0,
        CDELT1=-0.01,
        CDELT2=0.01,
        CRPIX1=17,
        CRPIX2=17,
        CUNIT1="deg",
        CUNIT2="deg",
        BUNIT="JY/BEAM",
    )
    data = np.random.default_rng(1).normal(size=(32, 32)).astype(np.float32)
    fits.PrimaryHDU(data, h).writeto(path)


def _site(tmp_path: Path, method: str) -> Path:
    site = init_site(tmp_path / "site")
    doc = yaml.safe_load(site.config_path.read_text())
    doc["worker"] = {**doc.get("worker", {}), **FAST_WORKER}
    if method == "copy":
        shm = Path("/dev/shm")
        if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("no second filesystem (/dev/shm) for the copy path")
        products_dir = shm / f"dsa-stream-test-{uuid.uuid4().hex[:8]}"
        doc["paths"]["products"] = str(products_dir)
    site.config_path.write_text(yaml.safe_dump(doc))
    return site.config_path


def _stage_image(ctx: PipelineContext) -> None:
    staged = ctx.path("staging", f"images/{NAME}")
    staged.mkdir(parents=True)
    for kind in ("image", "pb"):
        _fits(staged / f"{KEY}.{kind}.fits")
    (staged / f"{KEY}.image.json").write_text('{"done": true}\n')
    with ctx.store.transaction() as txn:
        job_id, token = manual_job(
            txn, dedupe_key=f"image:{KEY}", order_key=T0, group_id=None, detail="test"
        )
        txn.add_product(
            ProductSpec(
                kind="image",
                logical_key=f"image:{KEY}",
                root_id="staging",
                rel_path=f"images/{NAME}",
                manifest_hash=build_manifest(staged).digest(),
                obs_start=T0,
                obs_end=T0,
                qa_status=QaStatus.PASSED,
            ),
            job_id=job_id,
            lease_token=token,
        )
        txn.enqueue(publish_job("image", f"image:{KEY}", 1, T0))


def _worker(config: Path, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DSA_STREAM_CRASH_AT"}
    if crash_at:
        env["DSA_STREAM_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT, str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


CASES = [
    ("rename", "publish:after_fsync"),
    ("rename", "publish:after_rename"),
    ("rename", "publish:after_commit"),
    ("copy", "publish:after_write"),
    ("copy", "publish:after_fsync"),
    ("copy", "publish:after_rename"),
    ("copy", "publish:after_commit"),
]


@pytest.mark.parametrize(("method", "point"), CASES)
def test_crash_then_restart_and_reconcile(tmp_path: Path, method: str, point: str) -> None:
    config = _site(tmp_path, method)
    settings = load_settings(config)
    store = JobStore.from_settings(settings)
    ctx = PipelineContext.create(settings, store)
    try:
        _stage_image(ctx)
        crashed = _worker(config, point)
        assert crashed.returncode == 137, crashed.stderr[-2000:]
        again = _worker(config, None)
        assert again.returncode == 0, again.stderr[-2000:]
        reconcile(ctx, fix=True)
        report = reconcile(ctx)
        assert report.clean, report.discrepancies
        dest_dir = ctx.roots["products"] / "images"
        assert sorted(p.name for p in dest_dir.iterdir()) == [NAME]  # no .incoming left
        with store.engine.connect() as conn:
            row = conn.execute(select(products)).one()
            states = conn.execute(select(jobs.c.state).where(jobs.c.kind == "publish")).all()
        assert row.state == "published" and row.validation_status == "valid"
        assert row.published_rel_path == f"images/{NAME}"
        assert build_manifest(dest_dir / NAME).digest() == row.manifest_hash
        assert [s.state for s in states] == ["succeeded"]
        assert not ctx.path("staging", f"images/{NAME}").exists()
    finally:
        store.close()
        if method == "copy":
            import shutil

            shutil.rmtree(ctx.roots["products"], ignore_errors=True)
