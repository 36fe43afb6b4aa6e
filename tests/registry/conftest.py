"""Database fixtures of the registry tests: every DB test runs on SQLite and PostgreSQL.

* ``db_url`` (parametrised ``sqlite`` / ``postgresql``): a fresh, migrated database.
  SQLite: a copy of a file migrated once per session. PostgreSQL: ``CREATE DATABASE
  ... TEMPLATE`` of a database migrated once on the session's private server
  (``tests/pgserver.py``). The ``postgresql`` parameter carries the ``postgres``
  marker, so it fails rather than skips under ``DSA_STREAM_REQUIRE_HEAVY=1``.
* ``engine``, ``store`` (a :class:`JobStore` with an injected :class:`FakeClock`),
  ``clock``, ``make_worker`` (registers a worker), ``facts`` (builds FileFacts).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from dsa_stream.config import WorkerConfig
from dsa_stream.registry import FileFacts, JobStore, WorkerIdentity, make_engine, upgrade

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FAKE_HOST = "test-host-not-this-one"


class FakeClock:
    """An injectable clock: ``clock()`` returns the current fake time."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmpl") / "registry.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    # fold the WAL into the main file, so that copying the one file copies everything
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def pg_template(pg_server: Any) -> str:
    name = "registry_template"
    url = pg_server.create_database(name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "registry.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server = request.getfixturevalue("pg_server")
    template = request.getfixturevalue("pg_template")
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name, template=template)
    yield url
    with contextlib.suppress(Exception):
        server.drop_database(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def worker_config() -> WorkerConfig:
    return WorkerConfig()


@pytest.fixture
def store(engine: Engine, clock: FakeClock, worker_config: WorkerConfig) -> JobStore:
    return JobStore(engine, worker_config, clock=clock, rng=random.Random(1234))


@pytest.fixture
def make_worker(store: JobStore) -> Callable[..., str]:
    """Register a worker on a fake host (no pid checks) and return its id."""

    def _make(host: str = FAKE_HOST, pid: int = 999_999) -> str:
        ident = WorkerIdentity(
            id=str(uuid.uuid4()),
            host=host,
            pid=pid,
            boot_id="boot",
            proc_start="1",
            code_version="test",
            config_hash="cfg",
        )
        return store.start_worker(ident).worker_id

    return _make


@pytest.fixture
def facts() -> Callable[..., FileFacts]:
    """Build the FileFacts of subband ``sb`` of the group observed at ``t``."""

    def _facts(t: datetime, sb: int, **kw: Any) -> FileFacts:
        key = t.strftime("%Y-%m-%dT%H:%M:%S")
        base: dict[str, Any] = {
            "root_id": "incoming",
            "rel_path": f"{key}_sb{sb:02d}.hdf5",
            "size": 1000 + sb,
            "mtime_ns": 1,
            "checksum": f"{sb:016x}",
            "obs_time": t,
            "subband": sb,
            "group_key": key,
            "dec_deg": 54.6,
        }
        base.update(kw)
        return FileFacts(**base)

    return _facts
