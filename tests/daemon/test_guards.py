"""Disk and memory guards: claiming pauses (never a failed job) and resumes.

The probes are injected (a fake filesystem's free space, a fake available memory);
everything else is real: the daemon in burst mode, its worker and a SQLite registry.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsa_stream.daemon.guards import GIB, DiskGuard, Guards, MemoryGuard
from dsa_stream.daemon.service import Daemon, DaemonReport
from dsa_stream.pipeline.context import PipelineContext, StageOutcome, StageRun

from .conftest import DaemonSite, wait_for


def test_disk_guard_thresholds_and_hysteresis(tmp_path: Path) -> None:
    dirs = {"staging": tmp_path / "s", "products": tmp_path / "p", "logs": tmp_path / "l"}
    free = {dirs["staging"]: 50 * GIB, dirs["products"]: 5 * GIB}
    guard = DiskGuard(dirs, {"staging": 10, "products": 10}, 2, probe=lambda p: free[p])
    assert set(guard.dirs) == {"staging", "products"}  # logs is not guarded
    reason = guard.check()
    assert reason is not None and reason.startswith("disk: products")
    assert "5.0 GiB free, needs 10.0 GiB" in reason
    free[dirs["products"]] = 11 * GIB  # above the threshold but within the margin
    assert "needs 12.0 GiB to resume" in (guard.check() or "")
    free[dirs["products"]] = 12 * GIB
    assert guard.check() is None and guard.free()[("products")] == 12 * GIB
    free[dirs["products"]] = 11 * GIB  # running again: the plain threshold applies
    assert guard.check() is None


def test_disk_guard_pauses_when_space_cannot_be_measured(tmp_path: Path) -> None:
    def probe(path: Path) -> int:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    guard = DiskGuard({"products": tmp_path / "gone"}, {"products": 1}, probe=probe)
    assert "cannot be measured" in (guard.check() or "")
    assert guard.free() == {"products": None}


def test_memory_guard_holds_only_the_stages_that_do_not_fit() -> None:
    memory = MemoryGuard({"image": 6.0, "convert": 2.0}, 1.0, probe=lambda: 3 * GIB)
    gate = Guards(None, memory, waiting_kinds=lambda: {"image", "convert"})
    decision = gate(["convert", "image", "publish"])
    assert decision.kinds == ("convert", "publish")
    assert decision.reason == "memory: image needs 6.0 GiB; 3.0 GiB available"
    # nothing of the held kind is queued: not worth a reason
    quiet = Guards(None, memory, waiting_kinds=lambda: {"convert"})(["convert", "image"])
    assert quiet.kinds == ("convert",) and quiet.reason is None


def _burst_in_thread(daemon: Daemon) -> tuple[threading.Thread, dict[str, DaemonReport]]:
    out: dict[str, DaemonReport] = {}
    thread = threading.Thread(target=lambda: out.update(report=daemon.run(burst=True)))
    thread.start()
    return thread, out


def _recorder(ran: list[tuple[str, int]]) -> Any:
    def handler(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        ran.append((run.claim.kind, run.claim.job_id))
        return StageOutcome()

    return handler


def test_low_disk_pauses_claiming_and_resumes_without_failing(make_site) -> None:
    site: DaemonSite = make_site(
        daemon={"min_free_gib": {"staging": 10.0, "products": 10.0}, "disk_resume_margin_gib": 1.0}
    )
    job = site.enqueue("g1")
    free = {"bytes": 5 * GIB}
    ran: list[tuple[str, int]] = []
    daemon = Daemon(
        site.settings, handlers={"convert": _recorder(ran)}, disk_probe=lambda _p: free["bytes"]
    )
    thread, out = _burst_in_thread(daemon)
    try:
        assert wait_for(lambda: daemon.worker is not None and daemon.worker.paused_reason, 30)
        doc = daemon.health_page()
        assert doc["status"] == "degraded" and doc["paused"].startswith("disk: ")
        assert "staging (" in doc["paused"] and "has 5.0 GiB free, needs 1" in doc["paused"]
        assert any("claiming held back: disk" in r for r in doc["reasons"])
        free["bytes"] = int(10.5 * GIB)  # above the threshold, below threshold + margin
        time.sleep(0.5)
        assert ran == [] and site.jobs()[job].state == "queued" and site.jobs()[job].attempt == 0
        free["bytes"] = 12 * GIB
        thread.join(30)
    finally:
        free["bytes"] = 100 * GIB
        thread.join(30)
    assert out["report"].exit_code == 0
    assert ran == [("convert", job)]
    row = site.jobs()[job]
    assert row.state == "succeeded" and row.attempt == 1  # never failed for the pause


def test_memory_guard_runs_small_stages_and_holds_the_big_one(make_site) -> None:
    site: DaemonSite = make_site(
        daemon={
            "memory_guard": True,
            "memory_estimates_gib": {"image": 4.0, "convert": 1.0},
            "memory_default_gib": 1.0,
        }
    )
    image = site.enqueue("g0", 0, kind="image")  # higher priority, earlier: would go first
    convert = site.enqueue("g1", 5)
    available = {"bytes": 3 * GIB}
    ran: list[tuple[str, int]] = []
    handler = _recorder(ran)
    daemon = Daemon(
        site.settings,
        handlers={"convert": handler, "image": handler},
        memory_probe=lambda: available["bytes"],
    )
    thread, out = _burst_in_thread(daemon)
    try:
        assert wait_for(lambda: ("convert", convert) in ran, 30)
        assert wait_for(lambda: bool(daemon.worker and daemon.worker.paused_reason), 10)
        assert daemon.worker is not None
        assert daemon.worker.paused_reason == "memory: image needs 4.0 GiB; 3.0 GiB available"
        assert site.jobs()[image].state == "queued" and site.jobs()[image].attempt == 0
        available["bytes"] = 8 * GIB
        thread.join(30)
    finally:
        available["bytes"] = 100 * GIB
        thread.join(30)
    assert out["report"].exit_code == 0
    assert ran == [("convert", convert), ("image", image)]
    assert site.jobs()[image].state == "succeeded" and site.jobs()[image].attempt == 1


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MiB tmpfs (needs root; skipped otherwise)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def test_a_full_tmpfs_pauses_claiming_until_space_is_freed(make_site, small_tmpfs: Path) -> None:
    """The real statvfs probe on a small filesystem that fills up, then is cleaned."""
    staging = small_tmpfs / "staging"
    staging.mkdir()
    site: DaemonSite = make_site(
        paths={"staging": str(staging)},
        daemon={"min_free_gib": {"staging": 8 / 1024}, "disk_resume_margin_gib": 1 / 1024},
    )
    ballast = staging / "ballast"
    ballast.write_bytes(b"\0" * (10 * 2**20))  # 16 MiB - 10 MiB < 8 MiB threshold
    job = site.enqueue("g1")
    ran: list[tuple[str, int]] = []
    daemon = Daemon(site.settings, handlers={"convert": _recorder(ran)})
    thread, out = _burst_in_thread(daemon)
    try:
        assert wait_for(lambda: daemon.worker is not None and daemon.worker.paused_reason, 30)
        assert daemon.snapshot().disk_free_bytes["staging"] < 8 * 2**20
        time.sleep(0.3)
        assert ran == []
        ballast.unlink()
        thread.join(30)
    finally:
        ballast.unlink(missing_ok=True)
        thread.join(30)
    assert out["report"].exit_code == 0 and ran == [("convert", job)]
