"""Fixtures of the daemon tests: a migrated site with fast timings, stub jobs, processes.

* ``make_site(**sections)``: writes ``dsa-stream.yaml`` (fast worker/watcher/daemon
  numbers, endpoint off, guards neutral unless a test sets them), creates the site
  with ``init_site`` (directories + migrated SQLite registry) and returns a
  :class:`DaemonSite` with a store on it. ``registry_url`` switches to PostgreSQL.
* ``start_daemon(site, ...)``: ``tests/daemon/daemon_proc.py`` in a real process
  (real signals): the production :class:`~dsa_stream.daemon.service.Daemon` with the
  stub ``convert`` handler of that script (sleeps in a child process group, writes
  marker files), under the same signal handlers as ``dsa-stream run``.
* ``notify_socket``: a datagram socket standing in for systemd's ``$NOTIFY_SOCKET``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from dsa_stream.config import Settings, load_settings
from dsa_stream.registry import JobKind, JobSpec, JobStore
from dsa_stream.registry.models import jobs, workers
from dsa_stream.site import init_site

T0 = datetime(2025, 10, 2, tzinfo=UTC)
PROC = Path(__file__).with_name("daemon_proc.py")

FAST: dict[str, Any] = {
    "worker": {
        "heartbeat_interval_s": 0.5,
        "self_fence_s": 4.0,
        "lease_s": 6.0,
        "reap_interval_s": 0.5,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
    },
    "watcher": {
        "settle_s": 0.0,
        "retry_backoff_s": 0.05,
        "retry_backoff_max_s": 0.2,
        "reconcile_interval_s": 1.0,
        "expire_interval_s": 0.5,
        "use_observer": False,
    },
    "daemon": {
        "poll_s": 0.1,
        "supervisor_interval_s": 0.1,
        "status_interval_s": 0.5,
        "http_port": 0,
        "min_free_gib": {"staging": 0.0, "products": 0.0},
        "memory_guard": False,
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class DaemonSite:
    """A site under test."""

    root: Path
    config: Path
    settings: Settings
    store: JobStore

    @property
    def incoming(self) -> Path:
        return self.settings.paths.resolve("incoming")

    def enqueue(
        self, key: str, minutes: float = 0, kind: str = JobKind.CONVERT, **payload: Any
    ) -> int:
        spec = JobSpec(
            kind=kind,
            dedupe_key=f"{kind}:{key}",
            order_key=T0 + timedelta(minutes=minutes),
            payload={"group_key": key, **payload},
        )
        return self.store.enqueue(spec).job_id

    def jobs(self) -> dict[int, Any]:
        with self.store.engine.connect() as conn:
            return {r.id: r for r in conn.execute(select(jobs))}

    def workers(self) -> list[Any]:
        with self.store.engine.connect() as conn:
            return list(conn.execute(select(workers).order_by(workers.c.started_at)))

    def live_worker(self) -> Any | None:
        live = [w for w in self.workers() if w.state in ("active", "draining")]
        return live[-1] if live else None


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DSA_STREAM_") and key != "DSA_STREAM_CASA_DIR":
            monkeypatch.delenv(key)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[..., DaemonSite]]:
    made: list[DaemonSite] = []

    def _make(registry_url: str | None = None, **sections: Any) -> DaemonSite:
        root = tmp_path / f"site{len(made)}"
        root.mkdir(parents=True)
        doc = _merge({"version": 1, **FAST}, sections)
        doc["registry"] = {"url": registry_url or "sqlite:///registry.sqlite3"}
        config = root / "dsa-stream.yaml"
        config.write_text(yaml.safe_dump(doc))
        init_site(root)
        settings = load_settings(config)
        site = DaemonSite(root, config, settings, JobStore.from_settings(settings))
        made.append(site)
        return site

    yield _make
    for site in made:
        site.store.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class DaemonProc:
    proc: subprocess.Popen[str]
    site: DaemonSite

    def marker(self, job_id: int, attempt: int = 1) -> Path:
        return self.site.root / f"started-{job_id}-a{attempt}"

    def child_pid(self, job_id: int) -> int:
        return int((self.site.root / f"child-{job_id}.pid").read_text())

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., DaemonProc]]:
    started: list[DaemonProc] = []

    def _start(site: DaemonSite, env: dict[str, str] | None = None) -> DaemonProc:
        proc = subprocess.Popen(
            [sys.executable, str(PROC), str(site.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        dp = DaemonProc(proc, site)
        started.append(dp)
        return dp

    yield _start
    for dp in started:
        if dp.proc.poll() is None:
            dp.proc.kill()
            dp.proc.communicate()


class NotifyListener:
    """Stands in for systemd: collects the datagrams sent to ``$NOTIFY_SOCKET``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.fixture
def notify_listener(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    yield listener
    listener.close()
