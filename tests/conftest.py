"""Root test configuration.

* Markers ``casa``, ``wsclean`` and ``postgres`` label tests that need those
  parts. They skip on a developer machine that lacks them, but with
  ``DSA_STREAM_REQUIRE_HEAVY=1`` (set by ``make test`` and therefore by CI) any
  such skip is turned into a failure: CI never passes with CASA/WSClean tests skipped.
* CASA writes its files into a per-session directory, never into ``~`` or the CWD.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# A private PostgreSQL server for `postgres`-marked tests: fixtures `pg_server`, `pg_url`.
pytest_plugins = ["tests.pgserver"]

HEAVY_MARKERS = ("casa", "wsclean", "postgres")
REQUIRE_HEAVY = os.environ.get("DSA_STREAM_REQUIRE_HEAVY") == "1"


def pytest_configure(config: pytest.Config) -> None:
    # Keep CASA's generated config and logs out of the user's home during tests.
    casa_dir = Path(config.rootpath) / ".pytest_cache" / "casa"
    os.environ.setdefault("DSA_STREAM_CASA_DIR", str(casa_dir))
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE_HEAVY and report.skipped):
        return
    heavy = [m for m in HEAVY_MARKERS if item.get_closest_marker(m)]
    if heavy:
        report.outcome = "failed"
        report.longrepr = (
            f"test marked {'/'.join(heavy)} was skipped, but DSA_STREAM_REQUIRE_HEAVY=1 "
            f"forbids skipping it: {report.longrepr}"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip wsclean-marked tests when the executable is missing (a failure under CI)."""
    if shutil.which("wsclean") is None:
        skip = pytest.mark.skip(reason="wsclean executable not found")
        for item in items:
            if item.get_closest_marker("wsclean"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    """A test must not leave non-daemon threads running behind it."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [
        t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon
    ]
    for t in leaked:
        t.join(timeout=5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads leaked by the test: {still}"
