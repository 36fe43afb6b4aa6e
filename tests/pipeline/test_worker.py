"""The sequential worker: stage protocol with stub handlers (real store, real child processes)."""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dsa_stream.exceptions import ConversionError, InputFileError
from dsa_stream.pipeline.context import PipelineContext, StageOutcome, StageRun
from dsa_stream.pipeline.worker import Worker
from dsa_stream.registry import JobKind, JobSpec
from dsa_stream.registry.models import job_events, jobs
from dsa_stream.toolrun import ToolCommand, run_tool

T0 = datetime(2025, 10, 2, tzinfo=UTC)


class CorruptInput(InputFileError):
    """Waiting cannot help: the job goes to dead at once."""

    permanent = True


def enqueue(
    ctx: PipelineContext, kind: JobKind, key: str, minutes: float, **payload: object
) -> int:
    spec = JobSpec(
        kind=kind,
        dedupe_key=f"{kind}:{key}",
        order_key=T0 + timedelta(minutes=minutes),
        payload={"group_key": key, **payload},
    )
    return ctx.store.enqueue(spec).job_id


def states(ctx: PipelineContext) -> dict[str, str]:
    with ctx.store.engine.connect() as conn:
        return {
            r.dedupe_key: r.state for r in conn.execute(select(jobs.c.dedupe_key, jobs.c.state))
        }


def test_chain_runs_in_observation_order_and_exits_in_burst(site_ctx: PipelineContext) -> None:
    order: list[str] = []

    def convert(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        key = run.claim.payload["group_key"]
        order.append(f"convert {key}")
        nxt = JobSpec(
            kind=JobKind.IMAGE,
            dedupe_key=f"image:{key}",
            order_key=run.claim.order_key,
            payload={"group_key": key},
        )
        return StageOutcome(next_jobs=(nxt,))

    def image(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        order.append(f"image {run.claim.payload['group_key']}")
        return StageOutcome()

    for key, minutes in (("b", 5), ("c", 10), ("a", 0)):  # registered shuffled
        enqueue(site_ctx, JobKind.CONVERT, key, minutes)
    report = Worker(site_ctx, {"convert": convert, "image": image}, poll_s=0.05).run(burst=True)
    assert report.succeeded == 6 and report.exit_reason == "burst: nothing left"
    # image (higher priority) drains each group before the next convert starts
    assert order == ["convert a", "image a", "convert b", "image b", "convert c", "image c"]
    assert set(states(site_ctx).values()) == {"succeeded"}


def test_transient_error_is_retried_and_permanent_is_dead(site_ctx: PipelineContext) -> None:
    attempts: dict[str, int] = {}

    def convert(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        key = run.claim.payload["group_key"]
        attempts[key] = attempts.get(key, 0) + 1
        if key == "flaky" and attempts[key] == 1:
            raise ConversionError("disk hiccup")
        if key == "corrupt":
            raise CorruptInput("truncated input")
        return StageOutcome()

    enqueue(site_ctx, JobKind.CONVERT, "flaky", 0)
    jid = enqueue(site_ctx, JobKind.CONVERT, "corrupt", 1)
    report = Worker(site_ctx, {"convert": convert}, poll_s=0.05).run(burst=True)
    assert attempts == {"flaky": 2, "corrupt": 1}
    assert states(site_ctx) == {"convert:flaky": "succeeded", "convert:corrupt": "dead"}
    assert report.failed == 2 and report.succeeded == 1
    with site_ctx.store.engine.connect() as conn:
        err = conn.execute(select(jobs.c.last_error).where(jobs.c.id == jid)).scalar_one()
    assert "CorruptInput: truncated input" in err


def _sleeper(run: StageRun) -> None:
    cmd = ToolCommand(
        argv=(sys.executable, "-c", "import time; time.sleep(600)"),
        timeout_s=300,
        log_path=run.log_path,
    )
    run_tool(cmd, cancel=run.cancel, kill_grace_s=1)


def test_operator_cancel_kills_the_running_child(site_ctx: PipelineContext) -> None:
    jid = enqueue(site_ctx, JobKind.CONVERT, "slow", 0)

    def convert(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        threading.Timer(0.3, lambda: ctx.store.cancel(run.claim.job_id)).start()
        _sleeper(run)
        return StageOutcome()

    t0 = time.monotonic()
    report = Worker(site_ctx, {"convert": convert}, poll_s=0.05).run(burst=True)
    assert time.monotonic() - t0 < 20
    assert report.cancelled == 1 and states(site_ctx) == {"convert:slow": "cancelled"}
    assert jid


def test_abort_kills_the_stage_and_leaves_the_job_to_retry(site_ctx: PipelineContext) -> None:
    enqueue(site_ctx, JobKind.CONVERT, "long", 0)
    started = threading.Event()

    def convert(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        started.set()
        _sleeper(run)
        return StageOutcome()

    worker = Worker(site_ctx, {"convert": convert}, poll_s=0.05)
    threading.Thread(target=lambda: started.wait(30) and worker.abort(), daemon=True).start()
    t0 = time.monotonic()
    report = worker.run(burst=True)
    assert time.monotonic() - t0 < 20
    assert report.exit_reason == "aborted" and report.failed == 1
    assert states(site_ctx) == {"convert:long": "queued"}  # retried by the next worker
    again = Worker(site_ctx, {"convert": lambda ctx, run: StageOutcome()}, poll_s=0.05)
    assert again.run(burst=True).succeeded == 1


def test_graceful_stop_finishes_the_running_stage(site_ctx: PipelineContext) -> None:
    enqueue(site_ctx, JobKind.CONVERT, "one", 0)
    enqueue(site_ctx, JobKind.CONVERT, "two", 1)
    stop = threading.Event()

    def convert(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        stop.set()  # first SIGTERM arrives while the stage runs
        time.sleep(0.5)
        return StageOutcome()

    report = Worker(site_ctx, {"convert": convert}, poll_s=0.05).run(stop_event=stop)
    assert report.succeeded == 1 and report.exit_reason == "stop requested"
    assert states(site_ctx) == {"convert:one": "succeeded", "convert:two": "queued"}


def test_unknown_kind_is_dead_and_job_log_holds_context(
    site_ctx: PipelineContext, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO)  # the daemon's configured level
    enqueue(site_ctx, JobKind.CONVERT, "g1", 0)

    def convert(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        logging.getLogger("dsa_stream.test").info("stage says hello")
        ctx.store.enqueue(JobSpec(kind=JobKind.MOSAIC, dedupe_key="mosaic:w1", order_key=T0))
        return StageOutcome()

    report = Worker(site_ctx, {"convert": convert}, kinds=["convert", "mosaic"], poll_s=0.05).run(
        burst=True
    )
    assert report.succeeded == 1 and report.failed == 1
    assert states(site_ctx)["mosaic:w1"] == "dead"
    logs = list((site_ctx.roots["logs"] / "jobs").glob("job-*-convert-a1.log"))
    text = logs[0].read_text()
    assert "stage says hello" in text and "group_key=g1" in text and "stage=convert" in text
    with site_ctx.store.engine.connect() as conn:
        events = conn.execute(select(job_events.c.to_state)).scalars().all()
    assert "succeeded" in events and "dead" in events


@pytest.mark.slow
def test_lost_lease_commits_nothing(site_ctx: PipelineContext) -> None:
    """A stage that outlives its lease (heartbeats blocked) is stopped and commits nothing."""
    enqueue(site_ctx, JobKind.CONVERT, "g", 0)

    def convert(ctx: PipelineContext, run: StageRun) -> StageOutcome:
        # Another worker's reaper hands the job on: simulate by expiring the lease now.
        with ctx.store.transaction() as txn:
            txn.conn.execute(
                jobs.update().where(jobs.c.id == run.claim.job_id).values(lease_expires_at=T0)
            )
        ctx.store.reap()
        assert run.cancel.wait(10), "the lease keeper did not notice"
        return StageOutcome()

    report = Worker(site_ctx, {"convert": convert}, poll_s=0.05).run(max_jobs=1)
    assert report.lost == 1
    assert states(site_ctx) == {"convert:g": "queued"}
