"""The worker additions the daemon relies on: the gate, registry-failure backoff, a drain
while idle, job logs that hold only their job, and the snapshot health reads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pytest
from sqlalchemy.exc import OperationalError

from dsa_stream.pipeline.context import PipelineContext, StageOutcome, StageRun
from dsa_stream.pipeline.worker import GateDecision, Worker
from dsa_stream.registry import StopMode

from .conftest import DaemonSite, wait_for


def _ctx(site: DaemonSite) -> PipelineContext:
    return PipelineContext.create(site.settings, site.store)


def test_gate_holds_claims_and_its_reason_is_visible(make_site) -> None:
    site: DaemonSite = make_site()
    job = site.enqueue("g1")
    open_gate = threading.Event()
    calls: list[tuple[str, ...]] = []

    def gate(kinds: Sequence[str]) -> GateDecision:
        calls.append(tuple(kinds))
        return GateDecision(tuple(kinds)) if open_gate.is_set() else GateDecision((), "disk: full")

    worker = Worker(_ctx(site), {"convert": lambda c, r: StageOutcome()}, poll_s=0.05, gate=gate)
    thread = threading.Thread(target=lambda: worker.run(burst=True))
    thread.start()
    assert wait_for(lambda: worker.snapshot().state == "paused", 10)
    snap = worker.snapshot()
    assert snap.paused_reason == "disk: full" and snap.job_id is None
    assert site.jobs()[job].state == "queued"
    open_gate.set()
    thread.join(30)
    assert site.jobs()[job].state == "succeeded" and worker.paused_reason is None
    assert calls[0] == ("convert",)


def test_registry_errors_are_retried_not_fatal(make_site, caplog: pytest.LogCaptureFixture) -> None:
    site: DaemonSite = make_site()
    job = site.enqueue("g1")
    failures = {"left": 2}

    def flaky_gate(kinds: Sequence[str]) -> GateDecision:
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        return GateDecision(tuple(kinds))

    worker = Worker(
        _ctx(site), {"convert": lambda c, r: StageOutcome()}, poll_s=0.01, gate=flaky_gate
    )
    report = worker.run(burst=True)
    assert report.succeeded == 1 and site.jobs()[job].state == "succeeded"
    assert sum("registry error (retrying" in r.getMessage() for r in caplog.records) == 2


def test_drain_while_idle_marks_the_worker_stopped(make_site) -> None:
    site: DaemonSite = make_site()
    worker = Worker(_ctx(site), {"convert": lambda c, r: StageOutcome()}, poll_s=0.05)
    out = {}
    thread = threading.Thread(target=lambda: out.update(report=worker.run()))
    thread.start()
    assert wait_for(lambda: site.live_worker() is not None, 10)
    assert site.store.request_stop(worker.worker_id, StopMode.DRAIN)
    thread.join(10)
    assert not thread.is_alive()
    [row] = site.workers()
    assert row.state == "stopped" and "may not claim" in row.reason


def test_job_log_holds_only_its_own_records(make_site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    site: DaemonSite = make_site()
    job = site.enqueue("g1")
    noisy = logging.getLogger("dsa_stream.watcher.test")
    stop = threading.Event()

    def noise() -> None:
        while not stop.wait(0.005):
            noisy.info("ingest noise")

    def handler(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        logging.getLogger("dsa_stream.test.stage").info("the stage speaks")
        time.sleep(0.2)  # the noise thread logs meanwhile
        return StageOutcome()

    thread = threading.Thread(target=noise, daemon=True)
    thread.start()
    try:
        Worker(_ctx(site), {"convert": handler}, poll_s=0.05).run(burst=True)
    finally:
        stop.set()
        thread.join()
    text = (site.root / "logs" / "jobs" / f"job-{job}-convert-a1.log").read_text()
    assert "the stage speaks" in text and f"job {job} (convert) succeeded" in text
    assert "ingest noise" not in text
    assert any(r.getMessage() == "ingest noise" for r in caplog.records)  # not lost elsewhere
