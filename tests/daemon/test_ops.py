"""The operator surface of a running daemon: /health, /metrics, status, workers, logs.

The daemon runs in-process (service mode, on a thread) with a stub handler; the
endpoint is real HTTP on a free loopback port and the commands are the real CLI.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dsa_stream.cli.main import cli
from dsa_stream.daemon.joblogs import Follower, JobLog, follow, list_job_logs
from dsa_stream.daemon.service import Daemon, DaemonReport
from dsa_stream.pipeline.context import PipelineContext, StageOutcome, StageRun

from .conftest import DaemonSite, wait_for

# One sample line of the Prometheus text format: name, optional labels, value.
SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>([a-zA-Z_]\w*="([^"\\]|\\.)*",?)*)\})?'
    r" (?P<value>[-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|NaN|[-+]?Inf))$"
)


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by metric name; every sample's family must have a TYPE line first."""
    typed: set[str] = set()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        assert m["name"] in typed, f"{m['name']} has no TYPE line"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m["labels"] or ""))
        out.setdefault(m["name"], []).append((labels, float(m["value"])))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback test URL
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def talker(ctx: PipelineContext, run: StageRun) -> StageOutcome:
    log = logging.getLogger("dsa_stream.test.stage")
    log.info("stage of job %s says hello", run.claim.job_id)
    run.progress(0.5)
    if (run.claim.payload or {}).get("wait"):
        run.cancel.wait(10)
    return StageOutcome()


@pytest.fixture
def running(
    make_site, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[DaemonSite, Daemon, str]]:
    caplog.set_level(logging.INFO)  # the daemon's configured level
    port = _free_port()
    site: DaemonSite = make_site(daemon={"http_port": port})
    daemon = Daemon(site.settings, handlers={"convert": talker})
    out: dict[str, DaemonReport] = {}
    thread = threading.Thread(target=lambda: out.update(report=daemon.run()))
    thread.start()
    try:
        assert wait_for(lambda: daemon.phase == "running" and site.live_worker() is not None, 30)
        yield site, daemon, f"http://127.0.0.1:{port}"
    finally:
        daemon.request_stop("test over")
        thread.join(30)
    assert out["report"].exit_code == 0


def cli_json(site: DaemonSite, *args: str) -> Any:
    res = CliRunner().invoke(cli, ["--config", str(site.config), *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_health_and_metrics_endpoints(running: tuple[DaemonSite, Daemon, str]) -> None:
    site, daemon, base = running
    job = site.enqueue("g1")
    assert wait_for(lambda: site.jobs()[job].state == "succeeded", 30)

    code, ctype, body = _get(base + "/health")
    assert code == 200 and ctype == "application/json"
    doc = json.loads(body)
    assert doc["status"] == "ok", doc["reasons"]
    assert (
        doc["daemon"]["phase"] == "running"
        and doc["daemon"]["worker_id"] == daemon.worker.worker_id
    )
    assert doc["paused"] is None and doc["last_heartbeat_age_s"] < 5

    code, ctype, body = _get(base + "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    m = parse_metrics(body)
    for name in (
        "dsa_stream_up",
        "dsa_stream_worker_up",
        "dsa_stream_health_status",
        "dsa_stream_jobs",
        "dsa_stream_stage_duration_seconds",
        "dsa_stream_disk_free_bytes",
        "dsa_stream_claiming_paused",
        "dsa_stream_ingest_scans_total",
        "dsa_stream_ingest_files_found_by_scan_only_total",
        "dsa_stream_process_resident_memory_bytes",
        "dsa_stream_workers",
    ):
        assert name in m, f"{name} missing from /metrics"
    assert m["dsa_stream_worker_up"] == [({}, 1.0)]
    assert ({"kind": "convert", "state": "succeeded"}, 1.0) in m["dsa_stream_jobs"]
    assert {lbl["dir"] for lbl, _v in m["dsa_stream_disk_free_bytes"]} == {"staging", "products"}
    quantiles = {lbl["quantile"] for lbl, _v in m["dsa_stream_stage_duration_seconds"]}
    assert quantiles == {"0.5", "0.95"}

    code, _ctype, _body = _get(base + "/nothing")
    assert code == 404


def test_status_workers_and_logs_commands(running: tuple[DaemonSite, Daemon, str]) -> None:
    site, daemon, _base = running
    done = site.enqueue("g1", 0)
    assert wait_for(lambda: site.jobs()[done].state == "succeeded", 30)
    held = site.enqueue("g2", 5, wait=True)  # runs until cancelled
    assert wait_for(lambda: site.jobs()[held].state == "running", 30)

    status = cli_json(site, "status")
    assert status["daemon"]["running"] and status["daemon"]["worker_id"] == daemon.worker.worker_id
    assert status["health"]["status"] == "ok"
    [run] = status["running"]
    assert run["id"] == held and run["kind"] == "convert" and run["elapsed_s"] >= 0
    assert wait_for(lambda: cli_json(site, "status")["running"][0]["progress"] == 0.5, 10)
    assert status["backlog"]["convert"]["succeeded"] == 1
    text = CliRunner().invoke(cli, ["--config", str(site.config), "status"])
    assert text.exit_code == 0 and "health: ok" in text.output and f"{held}" in text.output

    [worker] = cli_json(site, "workers", "list", "--live")
    assert worker["id"] == daemon.worker.worker_id and worker["state"] == "active"
    assert worker["current_job_id"] == held and worker["current_job_kind"] == "convert"

    res = CliRunner().invoke(cli, ["--config", str(site.config), "logs", "--job", str(done)])
    assert res.exit_code == 0 and f"stage of job {done} says hello" in res.stdout
    assert "[job-" not in res.stdout  # one file: no prefix
    res = CliRunner().invoke(cli, ["--config", str(site.config), "logs", "--kind", "convert"])
    assert f"[job-{done}-convert-a1]" in res.stdout and f"[job-{held}-convert-a1]" in res.stdout
    res = CliRunner().invoke(cli, ["--config", str(site.config), "logs", "--kind", "image"])
    assert res.stdout == ""

    # The ingest thread's records stay out of the stage's log.
    log = (site.root / "logs" / "jobs" / f"job-{done}-convert-a1.log").read_text()
    assert "dsa_stream.watcher" not in log

    site.store.cancel(held)
    assert wait_for(lambda: site.jobs()[held].state == "cancelled", 30)


def test_follower_streams_new_lines_and_new_files(tmp_path: Path) -> None:
    d = tmp_path / "jobs"
    d.mkdir()
    first = d / "job-1-convert-a1.log"
    first.write_text("old line\n")
    (d / "notes.txt").write_text("not a job log\n")
    follower = Follower(d, lambda log: log.kind == "convert", from_end=True)
    assert follower.poll() == []
    with first.open("a") as fh:
        fh.write("new line\npartial")
    assert [(log.job_id, line) for log, line in follower.poll()] == [(1, "new line")]
    with first.open("a") as fh:
        fh.write(" done\n")
    (d / "job-2-convert-a1.log").write_text("second job\n")
    (d / "job-3-image-a1.log").write_text("not selected\n")
    got = [(log.label, line) for log, line in follower.poll()]
    assert got == [("job-1-convert-a1", "partial done"), ("job-2-convert-a1", "second job")]
    first.write_text("rotated\n")  # truncated and rewritten: start over
    assert [line for _log, line in follower.poll()] == ["rotated"]
    assert [log.job_id for log in list_job_logs(d)] == [1, 2, 3]

    stop = threading.Event()
    seen: list[str] = []

    def emit(log: JobLog, line: str) -> None:
        seen.append(line)
        if line == "last":
            stop.set()

    thread = threading.Thread(target=follow, args=(follower, emit, stop, 0.05))
    thread.start()
    with (d / "job-2-convert-a1.log").open("a") as fh:
        fh.write("more\nlast\n")
    thread.join(10)
    assert seen == ["more", "last"]


def test_logs_follow_command_streams_until_sigterm(make_site) -> None:
    site: DaemonSite = make_site()
    jobs_dir = site.root / "logs" / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    (jobs_dir / "job-1-convert-a1.log").write_text("before\n")
    cmd = [sys.executable, "-m", "dsa_stream.cli.main", "--config", str(site.config)]
    proc = subprocess.Popen(
        [*cmd, "logs", "--follow", "--poll", "0.1", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "[job-1-convert-a1] before\n"
        (jobs_dir / "job-2-calibrate-a1.log").write_text("a new stage\n")
        assert proc.stdout.readline() == "[job-2-calibrate-a1] a new stage\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
