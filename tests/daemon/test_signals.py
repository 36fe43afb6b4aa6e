"""The daemon in a real process: two-stage shutdown (T20), the site lock (T5), systemd
notifications, and operator drain/kill through the registry."""

from __future__ import annotations

import json
import os
import signal

import pytest
from click.testing import CliRunner

from dsa_stream.cli.main import cli, main
from dsa_stream.registry.workers import local_liveness_problem

from .conftest import DaemonSite, NotifyListener, wait_for


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:  # a zombie still answers kill(0)
        return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_first_sigterm_finishes_the_stage_and_notifies_systemd(
    make_site, start_daemon, notify_listener: NotifyListener
) -> None:
    site: DaemonSite = make_site()
    first = site.enqueue("g1", 0, sleep_s=2.0)
    second = site.enqueue("g2", 5, sleep_s=2.0)
    dp = start_daemon(site, env={"NOTIFY_SOCKET": notify_listener.path, "WATCHDOG_USEC": "400000"})
    assert wait_for(lambda: dp.marker(first).exists(), 60), dp.proc.stderr
    dp.proc.send_signal(signal.SIGTERM)
    code, out, err = dp.finish()
    assert code == 0, err
    report = json.loads(out)
    assert report["workers"][0]["succeeded"] == 1 and report["reason"].startswith("SIGTERM")
    states = {i: j.state for i, j in site.jobs().items()}
    assert states == {first: "succeeded", second: "queued"}  # finished, nothing new started
    assert not dp.marker(second).exists()
    [worker] = site.workers()
    assert worker.state == "stopped" and worker.current_job_id is None
    messages = list(notify_listener.messages)
    assert messages[0].startswith("READY=1"), messages
    assert "WATCHDOG=1" in messages
    stopping = [i for i, m in enumerate(messages) if m.startswith("STOPPING=1")]
    assert len(stopping) == 1 and "SIGTERM" in messages[stopping[0]]


def test_second_sigterm_aborts_the_stage_and_the_site_is_locked(
    make_site, start_daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    site: DaemonSite = make_site()
    job = site.enqueue("long", 0, sleep_s=120.0)
    dp = start_daemon(site)
    assert wait_for(lambda: dp.marker(job).exists(), 60)
    assert wait_for(lambda: (site.root / f"child-{job}.pid").exists(), 30)
    child = dp.child_pid(job)

    # A second daemon on the same site refuses to start and names the holder.
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(site.config), "run", "--burst"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"error: another dsa-stream run holds this site: pid {dp.proc.pid}" in err

    dp.proc.send_signal(signal.SIGTERM)
    status = site.root / ".dsa-stream-run.status.json"
    assert wait_for(lambda: '"phase": "stopping"' in status.read_text(), 20)
    dp.proc.send_signal(signal.SIGTERM)
    code, out, err = dp.finish(30)
    assert code == 3, err
    assert json.loads(out)["reason"].startswith("second signal")
    assert wait_for(lambda: _gone(child), 10), "the stage's child process survived the abort"
    row = site.jobs()[job]
    assert row.state == "queued" and row.attempt == 1  # left to be retried
    assert site.workers()[0].state == "stopped"


def test_operator_drain_and_kill(make_site, start_daemon) -> None:
    site: DaemonSite = make_site()
    # drain while idle: the daemon stops by itself, exit 0, worker row stopped
    dp = start_daemon(site)
    assert wait_for(lambda: site.live_worker() is not None, 60)
    wid = site.live_worker().id
    res = CliRunner().invoke(cli, ["--config", str(site.config), "workers", "drain", wid[:8]])
    assert res.exit_code == 0 and "drain requested" in res.output
    code, _out, err = dp.finish(30)
    assert code == 0, err
    assert {w.id: w.state for w in site.workers()}[wid] == "stopped"

    # kill during a stage: aborted, the job requeued, the process gone
    job = site.enqueue("long", 0, sleep_s=120.0)
    dp = start_daemon(site)
    assert wait_for(lambda: dp.marker(job).exists(), 60)
    live = site.live_worker()
    res = CliRunner().invoke(
        cli, ["--config", str(site.config), "workers", "kill", live.id, "--grace", "20", "--json"]
    )
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["requested"] and result["exited"] and result["signals"][0] == "SIGTERM"
    code, _out, err = dp.finish(30)
    assert code == 3, err
    assert local_liveness_problem(live.pid, live.proc_start, live.boot_id) is not None
    row = site.jobs()[job]
    assert row.state == "queued" and row.attempt == 1

    listing = CliRunner().invoke(cli, ["--config", str(site.config), "workers", "list", "--json"])
    rows = json.loads(listing.output)
    assert {r["id"] for r in rows} == {wid, live.id}
    assert {r["state"] for r in rows} == {"stopped"}


def test_restart_after_sigkill_recovers_the_job_and_kills_the_orphaned_stage(
    make_site, start_daemon
) -> None:
    """T5: a daemon killed with SIGKILL leaves a worker row, a running job and a stage
    child; the next daemon declares the old worker dead, kills the orphan and reruns."""
    site: DaemonSite = make_site()
    job = site.enqueue("long", 0, sleep_s=120.0)
    first = start_daemon(site)
    assert wait_for(lambda: (site.root / f"child-{job}.pid").exists(), 60)
    orphan = first.child_pid(job)
    old = site.live_worker()
    first.proc.kill()
    first.finish(10)
    assert not _gone(orphan)  # its own process group: SIGKILL of the daemon missed it
    assert site.jobs()[job].state == "running"

    second = start_daemon(site)
    assert wait_for(lambda: second.marker(job, attempt=2).exists(), 60)
    assert wait_for(lambda: _gone(orphan), 10), "the orphaned stage survived the restart"
    states = {w.id: (w.state, w.reason) for w in site.workers()}
    assert states[old.id][0] == "dead" and "gone" in states[old.id][1]
    row = site.jobs()[job]
    assert row.state == "running" and row.attempt == 2 and row.lease_owner != old.id
    second.proc.send_signal(signal.SIGTERM)
    status = site.root / ".dsa-stream-run.status.json"
    assert wait_for(lambda: '"phase": "stopping"' in status.read_text(), 20)
    second.proc.send_signal(signal.SIGTERM)
    code, _out, err = second.finish(30)
    assert code == 3, err
