"""The ingest loop with filesystem events (T17): events find files, the scan heals misses.

Each test runs :meth:`Ingestor.run` in a thread (joined at the end) against a
real directory, on SQLite and PostgreSQL. ``reconcile_interval_s`` is long
unless a test relies on the scan, so that "found by events" is what happens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from dsa_stream.simulate import SimulationOptions, WriterOptions, simulate_night
from dsa_stream.watcher.ingest import Ingestor

from .conftest import START, Library, Site, wait_for


@contextmanager
def running(s: Site, **kw: Any) -> Iterator[Ingestor]:
    ing = Ingestor(s.settings, store=s.store, clock=s.clock, **kw)
    stop = threading.Event()
    thread = threading.Thread(target=ing.run, args=(stop,), name="ingest")
    thread.start()
    try:
        assert wait_for(lambda: ing._started, timeout=10)
        yield ing
    finally:
        stop.set()
        thread.join(timeout=20)
        ing.close()
    assert not thread.is_alive()


def n_files(s: Site, state: str = "registered") -> int:
    return len(s.query("SELECT id FROM input_files WHERE state = :st", st=state))


def complete_groups(s: Site) -> list[str]:
    return [r.group_key for r in s.query("SELECT group_key FROM groups WHERE state='complete'")]


def simulate_into(s: Site, mode: str, **writer: Any) -> None:
    simulate_night(
        SimulationOptions(
            out_dir=s.incoming,
            n_groups=1,
            antennas=4,
            channels_per_subband=1,
            seed=5,
            start=START,
            writer=WriterOptions(mode=mode, **writer),
        )
    )


@pytest.mark.parametrize("mode", ["direct", "rename"])
def test_events_find_every_file(site: Callable[..., Site], mode: str) -> None:
    s = site(reconcile_interval_s=600)
    with running(s) as ing:
        simulate_into(s, mode)
        assert wait_for(lambda: n_files(s) == 16)
        stats = ing.stats()
    assert complete_groups(s) == [START.strftime("%Y-%m-%dT%H:%M:%S")]
    assert stats["files_found_by_scan_only"] == 0 and stats["event_hints"] >= 16
    assert stats["rejected"] == 0 and stats["observer_restarts"] == 0
    assert s.query("SELECT id FROM rejected_files") == []
    assert len(s.query("SELECT id FROM jobs WHERE kind = 'convert'")) == 1


def test_slowly_written_files_are_never_registered_early(site: Callable[..., Site]) -> None:
    """The simulator's slow mode grows 16 files in 4 appends, 0.6 s apart; the file sits
    still for longer than settle_s between appends, so incomplete files get inspected."""
    s = site(reconcile_interval_s=600, settle_s=0.25)
    with running(s) as ing:
        simulate_into(s, "slow", write_seconds=2.4, slow_chunks=4)
        assert wait_for(lambda: n_files(s) == 16)
        stats = ing.stats()
    assert stats["retries"] > 0 and stats["rejected"] == 0
    on_disk = {p.name: p.stat().st_size for p in s.incoming.glob("*.hdf5")}
    registered = {r.rel_path: r.size for r in s.query("SELECT rel_path, size FROM input_files")}
    assert registered == on_disk
    assert len(complete_groups(s)) == 1
    assert len(s.query("SELECT id FROM jobs WHERE kind = 'convert'")) == 1


def test_without_the_observer_the_scan_registers_everything(
    site: Callable[..., Site], library: Library
) -> None:
    s = site(use_observer=False, reconcile_interval_s=0.3)
    with running(s) as ing:
        for g in range(2):
            for sb in range(16):
                s.put(library.path(g, sb))
        assert wait_for(lambda: n_files(s) == 32)
        stats = ing.stats()
    assert stats["event_hints"] == 0 and stats["scans"] >= 3
    assert sorted(complete_groups(s)) == library.keys[:2]


def test_polling_observer(site: Callable[..., Site], library: Library) -> None:
    s = site(use_polling=True, poll_interval_s=0.1, settle_s=0.4, reconcile_interval_s=600)
    with running(s) as ing:
        for sb in range(16):
            s.put(library.path(0, sb))
        assert wait_for(lambda: n_files(s) == 16)
        stats = ing.stats()
    assert stats["event_hints"] >= 16 and stats["files_found_by_scan_only"] == 0


def test_a_killed_observer_is_restarted_and_the_scan_heals_the_misses(
    site: Callable[..., Site], library: Library
) -> None:
    s = site(reconcile_interval_s=600)
    gate = threading.Lock()  # held: the supervisor cannot restart the observer yet

    def factory() -> Any:
        with gate:
            return Observer()

    with running(s, observer_factory=factory) as ing:
        for sb in range(16):
            s.put(library.path(0, sb))
        assert wait_for(lambda: n_files(s) == 16)
        assert ing.stats()["files_found_by_scan_only"] == 0
        with gate:
            observer = ing.supervisor.observer
            observer.stop()  # the observer dies (as after an exception or a lost share)
            observer.join(5)
            for sb in range(16):  # written while nobody watches
                s.put(library.path(1, sb))
        assert wait_for(lambda: n_files(s) == 32)
        for sb in range(16):  # and events work again after the restart
            s.put(library.path(2, sb))
        assert wait_for(lambda: n_files(s) == 48)
        stats = ing.stats()
    assert stats["observer_restarts"] == 1
    assert stats["files_found_by_scan_only"] == 16
    assert sorted(complete_groups(s)) == library.keys


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_handler_exception_loses_no_file(site: Callable[..., Site], library: Library) -> None:
    """Our handler swallows its own errors; a foreign handler that raises kills watchdog's
    dispatcher thread, which the supervisor replaces. No file is lost either way."""
    s = site(reconcile_interval_s=600)
    crashed = threading.Event()

    class CrashOnce(FileSystemEventHandler):
        def dispatch(self, event: FileSystemEvent) -> None:
            if not crashed.is_set() and "_sb0" in str(event.src_path):
                crashed.set()
                raise RuntimeError("handler bug")

    def factory() -> Any:
        obs = Observer()
        obs.schedule(CrashOnce(), str(s.incoming), recursive=False)
        return obs

    with running(s, observer_factory=factory) as ing:
        real_put = ing.hints.put

        def failing_put(path: str) -> None:
            if path.endswith(("_sb14.hdf5", "_sb15.hdf5")):
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "undecodable name")
            real_put(path)

        ing.hints.put = failing_put  # type: ignore[method-assign]
        for sb in range(16):  # the first event kills watchdog's dispatcher
            s.put(library.path(0, sb))
        assert wait_for(lambda: ing.stats()["observer_restarts"] == 1)
        assert wait_for(lambda: n_files(s) == 16)  # the restart's rescan found them
        for sb in range(16):  # our handler fails on two events and carries on
            s.put(library.path(1, sb))
        assert wait_for(lambda: ing.stats()["handler_errors"] >= 2)
        ing.request_scan()  # the next periodic scan, without waiting 10 minutes
        assert wait_for(lambda: n_files(s) == 32)
        stats = ing.stats()
    assert crashed.is_set() and stats["observer_restarts"] == 1
    assert stats["files_found_by_scan_only"] >= 2
    assert sorted(complete_groups(s)) == library.keys[:2]


def test_an_event_overflow_triggers_a_rescan(site: Callable[..., Site], library: Library) -> None:
    """Lost events (kernel queue overflow): watchdog only logs it; we rescan at once."""
    s = site(reconcile_interval_s=600)
    with running(s) as ing:
        ing.hints.put = lambda path: None  # type: ignore[method-assign]  # every event lost
        for sb in range(16):
            s.put(library.path(0, sb))
        assert not wait_for(lambda: n_files(s) > 0, timeout=1.0)
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        assert wait_for(lambda: n_files(s) == 16, timeout=10)
        stats = ing.stats()
    assert stats["overflows"] == 1 and stats["files_found_by_scan_only"] == 16


def test_request_stop_ends_the_loop_promptly(site: Callable[..., Site]) -> None:
    s = site()
    ing = Ingestor(s.settings, store=s.store, clock=s.clock)
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.update(ing.run()))
    thread.start()
    try:
        assert wait_for(lambda: ing._started, timeout=10)
        t0 = time.monotonic()
        ing.request_stop()
        thread.join(10)
        assert time.monotonic() - t0 < 2.0
    finally:
        ing.request_stop()
        thread.join(10)
        ing.close()
    assert result["scans"] >= 2 and ing.supervisor.observer is None
