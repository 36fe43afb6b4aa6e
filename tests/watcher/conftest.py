"""Fixtures of the watcher tests: tiny simulated files, sites, clocks, registries.

* ``library`` (session): three consecutive observations (16 subbands each) written
  once by the simulator with 4 antennas and 1 channel per subband (~60 kB a file);
  ``alt_library``: the first observation again with another seed (same observation
  time, different content: conflicting duplicates).
* ``db_url`` (parametrised ``sqlite`` / ``postgresql``): a fresh migrated registry.
  The ``postgresql`` parameter carries the ``postgres`` marker (a skip fails in CI).
* ``clock``: wall clock plus an adjustable offset, shared by the ingestor and the
  store, so that "ten minutes later" takes no time while file mtimes stay real.
* ``site``: builds Settings for a fresh site with short settle/grace/scan times.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from dsa_stream.config import (
    GroupingConfig,
    PathsConfig,
    RegistryConfig,
    Settings,
    WatcherConfig,
)
from dsa_stream.registry import JobStore, make_engine, upgrade
from dsa_stream.simulate import SimulationOptions, simulate_night

START = datetime(2025, 10, 2, tzinfo=UTC)

#: Watcher settings of the tests: everything fast.
FAST_WATCHER: dict[str, Any] = {
    "settle_s": 0.2,
    "validation_grace_s": 60.0,
    "retry_backoff_s": 0.05,
    "retry_backoff_max_s": 0.2,
    "reconcile_interval_s": 1.0,
    "expire_interval_s": 0.2,
    "poll_interval_s": 0.1,
}


class OffsetClock:
    """The wall clock (aware UTC) plus an offset that tests can advance."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Library:
    """Simulated observations: ``files[k][sb]`` is subband ``sb`` of observation ``k``."""

    root: Path
    files: list[dict[int, Path]]
    keys: list[str]

    def path(self, group: int, sb: int) -> Path:
        return self.files[group][sb]


def _simulate(out: Path, n_groups: int, seed: int, **kw: Any) -> Library:
    result = simulate_night(
        SimulationOptions(
            out_dir=out,
            n_groups=n_groups,
            antennas=4,
            channels_per_subband=1,
            seed=seed,
            start=START,
            **kw,
        )
    )
    files = []
    for g in result.groups:
        by_sb = {}
        for name in g.files:
            by_sb[int(name.split("_sb")[1][:2])] = out / name
        files.append(by_sb)
    return Library(out, files, [g.key for g in result.groups])


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return _simulate(tmp_path_factory.mktemp("library"), 3, seed=1)


@pytest.fixture(scope="session")
def alt_library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return _simulate(tmp_path_factory.mktemp("alt_library"), 1, seed=2)


# -- registries -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def watcher_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wtmpl") / "registry.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def watcher_pg_template(pg_server: Any) -> str:
    name = "watcher_template"
    url = pg_server.create_database(name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "registry.sqlite3"
        shutil.copyfile(request.getfixturevalue("watcher_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server = request.getfixturevalue("pg_server")
    template = request.getfixturevalue("watcher_pg_template")
    name = f"w_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name, template=template)
    yield url
    with contextlib.suppress(Exception):
        server.drop_database(name)


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


def make_settings(root: Path, db_url: str, grouping: dict[str, Any] | None = None, **watcher: Any):
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    return Settings(
        paths=PathsConfig(root=root, incoming=root / "incoming"),
        registry=RegistryConfig(url=db_url),
        watcher=WatcherConfig(**{**FAST_WATCHER, **watcher}),
        grouping=GroupingConfig(**(grouping or {})),
    )


@dataclass
class Site:
    """A site under test: settings, its incoming directory, a store on its registry."""

    settings: Settings
    store: JobStore
    clock: OffsetClock

    @property
    def incoming(self) -> Path:
        return self.settings.paths.resolve("incoming")

    def put(self, src: Path, name: str | None = None, *, preserve: bool = False) -> Path:
        """Deliver a copy of ``src`` into incoming (new mtime unless ``preserve``)."""
        dest = self.incoming / (name or src.name)
        (shutil.copy2 if preserve else shutil.copyfile)(src, dest)
        return dest

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.store.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def conn(self) -> contextlib.AbstractContextManager[Connection]:
        return self.store.engine.connect()


@pytest.fixture
def site(tmp_path: Path, db_url: str, clock: OffsetClock) -> Iterator[Callable[..., Site]]:
    """``site(**watcher_overrides, grouping={...})`` -> a :class:`Site` (store closed later)."""
    made: list[Site] = []

    def _make(grouping: dict[str, Any] | None = None, **watcher: Any) -> Site:
        settings = make_settings(tmp_path / f"site{len(made)}", db_url, grouping, **watcher)
        store = JobStore(make_engine(db_url), settings.worker, clock=clock)
        s = Site(settings, store, clock)
        made.append(s)
        return s

    yield _make
    for s in made:
        s.store.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
