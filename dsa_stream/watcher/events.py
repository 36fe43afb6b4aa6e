"""Filesystem events as hints: a watchdog observer that can only make ingestion faster.

Reliability §3.1: watchdog drops events when the kernel queue overflows, a handler
exception kills its dispatcher thread, an emitter can die when a share goes away,
and inotify sees nothing written by another NFS client. So:

* :class:`HintHandler` only puts the path onto a :class:`HintQueue` (a lock-protected,
  de-duplicated set: never blocks on I/O, never raises) for ``created``,
  ``modified``, ``closed`` and ``moved`` (the destination: rename into place);
* :class:`ObserverSupervisor` checks the observer and its emitters and replaces a
  dead observer (the caller then rescans the directory);
* :class:`OverflowMonitor` notices watchdog's "queue overflowed" log record and asks
  for a rescan;
* the periodic reconcile scan stays the source of truth.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

logger = logging.getLogger(__name__)

#: Event types that may mean "a file appeared or changed" (opened/closed-no-write and
#: attrib are ignored: our own reads produce them).
HINT_EVENTS = frozenset({"created", "modified", "closed", "moved"})
#: watchdog loggers that report an inotify queue overflow.
OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")

ObserverFactory = Callable[[], Any]


class HintQueue:
    """Paths reported by the observer, de-duplicated, in arrival order.

    ``put`` takes a lock for a dictionary insert and returns: safe to call from a
    watchdog handler. The registrar drains it with :meth:`drain` and sleeps in
    :meth:`wait`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._paths: dict[str, None] = {}
        self._woken = False

    def put(self, path: str) -> None:
        """Add a path (a no-op if it is already waiting)."""
        with self._cond:
            self._paths[path] = None
            self._cond.notify()

    def drain(self, limit: int | None = None) -> list[str]:
        """Remove and return up to ``limit`` waiting paths, oldest first."""
        with self._cond:
            if limit is None or limit >= len(self._paths):
                out = list(self._paths)
                self._paths.clear()
            else:
                out = []
                for path in list(self._paths)[:limit]:
                    del self._paths[path]
                    out.append(path)
            return out

    def wait(self, timeout: float) -> bool:
        """Sleep until a path arrives, :meth:`wake` is called, or ``timeout`` passes.

        Returns:
            True when paths are waiting.
        """
        with self._cond:
            if not self._paths and not self._woken and timeout > 0:
                self._cond.wait(timeout)
            self._woken = False
            return bool(self._paths)

    def wake(self) -> None:
        """End a :meth:`wait` early (a rescan was requested)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._paths)


class HintHandler(FileSystemEventHandler):
    """Puts the path of every relevant file event onto a :class:`HintQueue`; never raises.

    Args:
        hints: Where the paths go.
        on_error: Called (never raising either) when handling an event failed.
    """

    def __init__(
        self, hints: HintQueue, on_error: Callable[[BaseException], None] | None = None
    ) -> None:
        super().__init__()
        self.hints = hints
        self.on_error = on_error

    def dispatch(self, event: FileSystemEvent) -> None:
        """Handle one event (watchdog calls this on its dispatcher thread)."""
        try:
            if event.is_directory or event.event_type not in HINT_EVENTS:
                return
            path = event.dest_path if event.event_type == "moved" else event.src_path
            if path:
                self.hints.put(os.fsdecode(path))
        except Exception as exc:  # an exception here would kill watchdog's dispatcher
            logger.exception("file event handler failed on %r", event)
            if self.on_error is not None:
                try:
                    self.on_error(exc)
                except Exception:
                    logger.exception("file event error callback failed")


def make_observer(use_polling: bool, poll_interval_s: float) -> Any:
    """An inotify observer, or a polling one (network filesystems)."""
    if use_polling:
        return PollingObserver(timeout=poll_interval_s)
    return Observer()


class ObserverSupervisor:
    """Runs a watchdog observer on one directory and replaces it when it dies.

    Args:
        directory: The watched directory (not recursive).
        handler: The event handler.
        factory: Makes a new, unstarted observer.
        join_timeout_s: How long :meth:`stop` waits for the observer's threads.
        retry_s: First delay before trying again after the observer failed to start
            (doubles up to ``retry_max_s``).
        retry_max_s: Longest delay between start attempts.
    """

    def __init__(
        self,
        directory: Path,
        handler: FileSystemEventHandler,
        factory: ObserverFactory,
        *,
        join_timeout_s: float = 5.0,
        retry_s: float = 5.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self.directory = directory
        self.handler = handler
        self.factory = factory
        self.join_timeout_s = join_timeout_s
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.observer: Any = None
        self.starts = 0
        self.restarts = 0
        self._failures = 0
        self._next_attempt = 0.0

    def _start(self) -> bool:
        if time.monotonic() < self._next_attempt:
            return False
        observer = self.factory()
        try:
            observer.schedule(self.handler, str(self.directory), recursive=False)
            observer.start()
        except Exception as exc:  # e.g. the directory is gone, or inotify limits reached
            self._failures += 1
            delay = min(self.retry_s * 2.0 ** min(self._failures - 1, 16), self.retry_max_s)
            self._next_attempt = time.monotonic() + delay
            logger.error(
                "cannot watch %s: %s (relying on the reconcile scan; retrying in %.0f s)",
                self.directory,
                exc,
                delay,
            )
            self._stop_observer(observer)
            return False
        self.observer = observer
        self.starts += 1
        self._failures = 0
        return True

    def start(self) -> bool:
        """Start watching; False when the observer could not start (retried by :meth:`check`)."""
        return self._start()

    def alive(self) -> bool:
        """True when the observer and every one of its emitters are running."""
        obs = self.observer
        if obs is None or not obs.is_alive():
            return False
        emitters = list(getattr(obs, "emitters", ()))
        return bool(emitters) and all(e.is_alive() for e in emitters)

    def check(self) -> bool:
        """Replace a dead observer. Returns True when a new one was started."""
        if self.alive():
            return False
        if self.observer is not None:
            logger.warning("file observer on %s died; restarting it", self.directory)
            self._stop_observer(self.observer)
            self.observer = None
        if self._start():
            self.restarts += 1
            return True
        return False

    def _stop_observer(self, observer: Any) -> None:
        try:
            observer.stop()
            if observer.is_alive():
                observer.join(self.join_timeout_s)
            for emitter in list(getattr(observer, "emitters", ())):
                if emitter.is_alive():
                    emitter.join(self.join_timeout_s)
        except Exception:
            logger.exception("stopping the file observer failed")

    def stop(self) -> None:
        """Stop the observer and wait for its threads."""
        if self.observer is not None:
            self._stop_observer(self.observer)
            self.observer = None


class OverflowMonitor(logging.Filter):
    """Calls ``callback`` when watchdog logs that the inotify queue overflowed.

    watchdog handles ``IN_Q_OVERFLOW`` internally and only logs it; after an
    overflow events were lost, so the directory must be rescanned. Install with
    :meth:`install` and remove with :meth:`remove`. Records are never suppressed.
    """

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self.callback = callback

    def filter(self, record: logging.LogRecord) -> bool:
        """Look at one record of the watchdog loggers."""
        try:
            if "overflow" in record.getMessage().lower():
                self.callback()
        except Exception:
            logger.exception("overflow callback failed")
        return True

    def install(self) -> None:
        """Attach to the watchdog loggers."""
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).addFilter(self)

    def remove(self) -> None:
        """Detach from the watchdog loggers."""
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeFilter(self)
