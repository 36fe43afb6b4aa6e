"""A throw-away PostgreSQL server for tests (a pytest plugin, registered in tests/conftest.py).

Fixtures for every test directory:

* ``pg_server`` (session): a private server on 127.0.0.1 with a random free port and a
  temporary data directory, started on first use and removed at the end of the session.
  It skips when the PostgreSQL binaries are missing, which fails under
  ``DSA_STREAM_REQUIRE_HEAVY=1`` (``make test``, CI) because such tests carry the
  ``postgres`` marker.
* ``pg_url`` (function): a fresh, empty database on that server; its URL.

Usage in another directory::

    @pytest.mark.postgres
    def test_something(pg_url: str) -> None:
        engine = make_engine(pg_url)

The server uses ``fsync=off`` (tests kill clients, never the server). When the tests
run as root, the server runs as the ``postgres`` system user (initdb refuses root).
Outside pytest (``bench/``), use :class:`PgServer` directly as a context manager.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_counter = itertools.count(1)


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb`` and ``postgres`` (newest version), or None."""
    env = os.environ.get("DSA_STREAM_PG_BIN")
    candidates = [env] if env else sorted(glob.glob(PG_BIN_GLOB), reverse=True)
    for cand in candidates:
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "postgres").exists():
            return Path(cand)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """A private PostgreSQL cluster: ``initdb`` + ``postgres`` on loopback."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = 0
        self.datadir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            self._run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout_s: float = 60.0) -> None:
        """initdb into a temporary directory and start the server; wait until it accepts."""
        self.datadir = Path(tempfile.mkdtemp(prefix="dsa-stream-pg-"))
        if self._run_as:
            os.chown(self.datadir, self._run_as["user"], self._run_as["group"])
        subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.datadir / "data"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=timeout_s,
            **self._run_as,
        )
        for _ in range(5):
            self.port = _free_port()
            if self._launch(timeout_s):
                return
        raise RuntimeError(f"PostgreSQL did not start; see {self.datadir / 'server.log'}")

    def _launch(self, timeout_s: float) -> bool:
        assert self.datadir is not None
        log = open(self.datadir / "server.log", "ab")  # noqa: SIM115 - kept for the process
        if self._run_as:
            os.chown(self.datadir / "server.log", self._run_as["user"], self._run_as["group"])
        self._proc = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.datadir / "data"),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._run_as,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False  # e.g. the port was taken in the meantime
            if self._accepts():
                return True
            time.sleep(0.1)
        self.stop()
        return False

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user="postgres",
                dbname="postgres",
                connect_timeout=2,
            ):
                return True
        except psycopg.OperationalError:
            return False

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement in autocommit mode (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a database (optionally a copy of ``template``); returns its URL."""
        name = name or f"t{os.getpid()}_{next(_counter)}"
        tmpl = f" TEMPLATE {template}" if template else ""
        self.execute(f"CREATE DATABASE {name}{tmpl}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its clients."""
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Fast shutdown, then remove the data directory."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(2)  # SIGINT = fast shutdown
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=30)
        self._proc = None
        if self.datadir is not None:
            shutil.rmtree(self.datadir, ignore_errors=True)
            self.datadir = None

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A private PostgreSQL server for the whole session (skips without the binaries)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (Debian package `postgresql`)")
    server = PgServer(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh, empty database, dropped after the test."""
    name = f"t{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name)
    yield url
    with contextlib.suppress(Exception):
        pg_server.drop_database(name)
