"""Event hints: the queue, the never-raising handler, the observer supervisor, overflows."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)
from watchdog.observers import Observer

from dsa_stream.watcher.events import (
    HintHandler,
    HintQueue,
    ObserverSupervisor,
    OverflowMonitor,
    make_observer,
)

from .conftest import wait_for


def test_hint_queue_dedupes_keeps_order_and_drains_in_batches() -> None:
    q = HintQueue()
    for p in ("a", "b", "a", "c", "b"):
        q.put(p)
    assert len(q) == 3
    assert q.drain(2) == ["a", "b"] and q.drain() == ["c"] and q.drain() == []


def test_hint_queue_wait_wakes_on_put_and_on_wake() -> None:
    q = HintQueue()
    t0 = time.monotonic()
    assert q.wait(0.05) is False and time.monotonic() - t0 >= 0.04
    timer = threading.Timer(0.05, q.put, args=("x",))
    timer.start()
    assert q.wait(5.0) is True
    timer.join()
    q.drain()
    timer = threading.Timer(0.05, q.wake)
    timer.start()
    t0 = time.monotonic()
    assert q.wait(5.0) is False and time.monotonic() - t0 < 2.0
    timer.join()


def test_handler_pushes_file_paths_only_for_relevant_events() -> None:
    q = HintQueue()
    h = HintHandler(q)
    h.dispatch(FileCreatedEvent("/in/a"))
    h.dispatch(FileModifiedEvent("/in/b"))
    h.dispatch(FileClosedEvent("/in/c"))
    h.dispatch(FileMovedEvent("/in/.d.tmp", "/in/d"))  # rename into place: the destination
    for ignored in (
        FileDeletedEvent("/in/e"),
        FileOpenedEvent("/in/f"),  # our own reads produce these
        FileClosedNoWriteEvent("/in/g"),
        DirCreatedEvent("/in/sub"),
    ):
        h.dispatch(ignored)
    assert q.drain() == ["/in/a", "/in/b", "/in/c", "/in/d"]


def test_handler_never_raises() -> None:
    class Broken(HintQueue):
        def put(self, path: str) -> None:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad name")

    errors: list[BaseException] = []
    h = HintHandler(Broken(), on_error=errors.append)
    h.dispatch(FileCreatedEvent("/in/a"))  # would kill watchdog's dispatcher thread
    assert len(errors) == 1 and isinstance(errors[0], UnicodeDecodeError)
    h2 = HintHandler(Broken(), on_error=lambda e: (_ for _ in ()).throw(RuntimeError("x")))
    h2.dispatch(FileCreatedEvent("/in/a"))


def _events_reach(sup: ObserverSupervisor, q: HintQueue, path: Path) -> bool:
    path.write_bytes(b"x")
    return wait_for(lambda: str(path) in q.drain(), timeout=5)


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_supervisor_restarts_a_dead_observer(tmp_path: Path, polling: bool) -> None:
    q = HintQueue()
    sup = ObserverSupervisor(tmp_path, HintHandler(q), lambda: make_observer(polling, 0.05))
    try:
        assert sup.start() and sup.alive() and not sup.check()
        assert _events_reach(sup, q, tmp_path / "one")
        sup.observer.stop()  # the observer dies behind the supervisor's back
        sup.observer.join(5)
        assert not sup.alive()
        assert sup.check() and sup.restarts == 1 and sup.alive()
        assert _events_reach(sup, q, tmp_path / "two")
        # only an emitter dies (e.g. an OSError when a share goes away)
        emitter = next(iter(sup.observer.emitters))
        emitter.stop()
        emitter.join(5)
        assert not sup.alive() and sup.check() and sup.restarts == 2
        assert _events_reach(sup, q, tmp_path / "three")
    finally:
        sup.stop()
    assert sup.observer is None


def test_supervisor_retries_a_directory_that_is_not_there_yet(tmp_path: Path) -> None:
    target = tmp_path / "incoming"
    sup = ObserverSupervisor(target, HintHandler(HintQueue()), Observer, retry_s=0.05)
    try:
        assert not sup.start() and not sup.alive()
        assert not sup.check()  # within the retry delay: not even attempted
        target.mkdir()
        assert wait_for(sup.check, timeout=5) and sup.alive()
    finally:
        sup.stop()


def test_overflow_monitor_sees_watchdog_overflow_records() -> None:
    calls: list[int] = []
    mon = OverflowMonitor(lambda: calls.append(1))
    log = logging.getLogger("watchdog.observers.inotify_c")
    mon.install()
    try:
        log.warning("Inotify queue overflowed; filesystem events were lost")
        log.warning("something else")
    finally:
        mon.remove()
    log.warning("Inotify queue overflowed; filesystem events were lost")
    assert calls == [1]
