"""Small parts of the daemon: the site lock, sd_notify, health rules, the PostgreSQL path."""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dsa_stream.daemon.health import health
from dsa_stream.daemon.lock import SiteLock, SiteLockedError
from dsa_stream.daemon.sdnotify import Notifier
from dsa_stream.daemon.service import Daemon
from dsa_stream.daemon.state import DaemonSnapshot, live_status, read_status, write_status
from dsa_stream.pipeline.context import StageOutcome
from dsa_stream.registry.workers import WorkerIdentity

from .conftest import DaemonSite


def test_site_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "root" / ".dsa-stream-run.lock"
    with SiteLock(path):
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(SiteLockedError, match=f"pid {os.getpid()} on "):
            SiteLock(path).acquire()  # a second open file description conflicts
    with SiteLock(path):  # released: free again
        pass
    assert path.read_text() == ""


def test_sd_notify_paths_and_abstract_sockets() -> None:
    assert not Notifier({}).enabled and Notifier({}).ready() is False
    name = f"dsa-stream-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000"}
        notifier = Notifier(env)
        assert notifier.watchdog_interval_s == 1.5
        assert notifier.ready("up") and notifier.watchdog()
        assert sock.recv(100) == b"READY=1\nSTATUS=up"
        assert sock.recv(100) == b"WATCHDOG=1"
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "10", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None  # the watchdog is for another process
    assert Notifier({"NOTIFY_SOCKET": "/nonexistent/sock"}).ready() is False


def _snapshot(**over: object) -> DaemonSnapshot:
    ident = WorkerIdentity.current("h")
    now = datetime.now(UTC)
    base: dict[str, object] = {
        "pid": ident.pid,
        "host": ident.host,
        "boot_id": ident.boot_id,
        "proc_start": ident.proc_start,
        "worker_id": ident.id,
        "mode": "service",
        "phase": "running",
        "started_at": now,
        "updated_at": now,
        "threads": {"worker": True, "ingest": True, "reaper": True},
    }
    return DaemonSnapshot.model_validate({**base, **over})


def test_health_rules_and_the_status_file(tmp_path: Path, make_site) -> None:
    site: DaemonSite = make_site()
    settings = site.settings
    assert health(settings, _snapshot(), None)["status"] == "ok"
    dead = health(settings, _snapshot(threads={"worker": True, "ingest": False}), None)
    assert dead["status"] == "failing" and "ingest" in dead["reasons"][0]
    held = health(settings, _snapshot(paused_reason="memory: image needs 6.0 GiB"), None)
    assert held["status"] == "degraded" and held["paused"].startswith("memory")
    assert health(settings, None, None, "connection refused")["status"] == "failing"

    path = tmp_path / "status.json"
    write_status(path, _snapshot())
    snap, why = live_status(path)
    assert snap is not None and why is None  # this very process is alive
    write_status(path, _snapshot(pid=2**22 + 7))
    assert "gone" in (live_status(path)[1] or "")
    path.write_text("{not json")
    assert read_status(path) is None and live_status(path)[0] is None


@pytest.mark.postgres
def test_burst_on_postgresql(make_site, pg_url: str) -> None:
    site: DaemonSite = make_site(registry_url=pg_url)
    job = site.enqueue("g1")
    report = Daemon(site.settings, handlers={"convert": lambda c, r: StageOutcome()}).run(
        burst=True
    )
    assert report.exit_code == 0 and report.workers[0].succeeded == 1
    assert site.jobs()[job].state == "succeeded"
    assert [w.state for w in site.workers()] == ["stopped"]
