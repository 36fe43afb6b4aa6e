"""The ingest loop of reliability §3.4: hints and scans in, registrations out.

One :class:`Ingestor` watches ``paths.incoming`` and, through its
:class:`~dsa_stream.watcher.registrar.Registrar`, is the single writer of file rows
for it. Everything runs on the thread that calls :meth:`Ingestor.run` (watchdog's
threads only put paths on a queue):

1. at start: a reconcile scan, then the observer, then another scan (closing the
   race between the first scan and the observer);
2. each loop: check the observer (restart it if dead, then rescan); run the
   reconcile scan when due (every ``reconcile_interval_s``, or at once after an
   overflow or a restart); drain up to ``batch_size`` x 8 event hints; inspect up
   to ``batch_size`` due candidates; when caught up, apply the incomplete-group
   timeout (every ``expire_interval_s``);
3. sleep until the next due time, a hint, or 0.5 s (to notice ``stop_event``);
   after a registry failure, back off for ``DB_RETRY_S`` and rescan.

Per file: a known path whose ``(size, mtime_ns)`` the registry already holds
(registered or rejected) is skipped without reading it; otherwise it must settle
(:mod:`~dsa_stream.watcher.tracker`) and validate
(:func:`~dsa_stream.watcher.inspect.inspect_subband_file`); then it is registered
(:func:`~dsa_stream.registry.rejections.register_resolving`: group assembly and the
convert job in one transaction), retried within the grace period, or rejected
with the reason (``rejected_files``). The reconcile scan also marks registered
files that left the disk ``missing`` and closes rejections of removed files.

Wall-clock times (file ages, settle, grace, first-seen) come from the injectable
``clock``; they are bookkeeping. Observation times come from file headers only.

Embedding (the daemon)::

    upgrade_registry(settings)
    ingestor = Ingestor(settings, store=store)   # its own JobStore is fine too
    thread = threading.Thread(target=ingestor.run, args=(stop_event,))
    ...  # ingestor.stats() for metrics; ingestor.request_stop() to end early
    thread.join(); ingestor.close()

"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from dsa_stream.config import Settings
from dsa_stream.exceptions import RegistryError, WatcherError
from dsa_stream.registry.jobstore import JobStore
from dsa_stream.watcher.events import (
    HintHandler,
    HintQueue,
    ObserverFactory,
    ObserverSupervisor,
    OverflowMonitor,
    make_observer,
)
from dsa_stream.watcher.journal import Journal
from dsa_stream.watcher.registrar import DB_RETRY_S, IngestEvent, Listener, Registrar
from dsa_stream.watcher.report import Counters, IngestReport
from dsa_stream.watcher.scan import (
    CANDIDATE_KINDS,
    FileStat,
    NameKind,
    classify_name,
    scan_directory,
    stat_file,
)
from dsa_stream.watcher.tracker import Tracker

logger = logging.getLogger(__name__)

#: Root id of the incoming directory in the registry (paths are relative to it).
INCOMING_ROOT_ID = "incoming"
#: Longest sleep of the loop, so that ``stop_event`` is noticed promptly.
MAX_WAIT_S = 0.5
_MAX_LOGGED_IGNORED = 10_000

__all__ = ["DB_RETRY_S", "INCOMING_ROOT_ID", "IngestEvent", "Ingestor", "ingest_once", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, aware UTC (the default clock)."""
    return datetime.now(UTC)


class Ingestor:
    """Watches the incoming directory and registers its subband files (module docstring).

    Args:
        settings: Site settings (``paths.incoming``, ``watcher``, ``grouping``).
        store: The registry; None opens one from ``settings`` (closed by :meth:`close`).
        clock: Wall clock for bookkeeping (file ages); default :func:`utc_now`.
        observer_factory: Makes an unstarted watchdog observer; default from
            ``watcher.use_polling``.
        listener: Called after every registration (never let it raise).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: JobStore | None = None,
        clock: Clock | None = None,
        observer_factory: ObserverFactory | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.watcher
        self.grouping = settings.grouping
        self.directory = settings.paths.resolve("incoming")
        self.root_id = INCOMING_ROOT_ID
        self._own_store = store is None
        self.store = store if store is not None else JobStore.from_settings(settings)
        self.clock: Clock = clock or utc_now
        self.counters = Counters()
        self.hints = HintQueue()
        self.registrar = Registrar(
            self.directory,
            self.root_id,
            self.store,
            self.config,
            self.grouping,
            self.clock,
            self.counters,
            lambda: self._observer_on,
            listener,
        )
        self._scan_requested = threading.Event()
        self._stop = threading.Event()
        self._observer_on = False
        self._logged_ignored: set[str] = set()
        self._next_scan_at: datetime | None = None
        self._next_expire_at: datetime | None = None
        self._raise_db_errors = False
        self._started = False
        self._baseline_done = False
        self._db_retry_at: datetime | None = None
        factory = observer_factory or (
            lambda: make_observer(self.config.use_polling, self.config.poll_interval_s)
        )
        handler = HintHandler(self.hints, on_error=lambda _e: self.counters.add("handler_errors"))
        self.supervisor = ObserverSupervisor(self.directory, handler, factory)
        self._overflow = OverflowMonitor(self._on_overflow)

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start-up: scan, start the observer (if configured), scan again.

        Files found before the second scan completes count as backlog, never as
        missed events. A registry failure here is logged and retried by the loop.
        """
        self._guarded(lambda: self.scan(origin="startup"))
        if self.config.use_observer:
            self._overflow.install()
            self._observer_on = self.supervisor.start()
        self._started = True
        if self._guarded(lambda: self.scan(origin="startup")):
            self._baseline_done = True

    def close(self) -> None:
        """Stop the observer and close the store if this ingestor opened it."""
        self.supervisor.stop()
        self._overflow.remove()
        self._observer_on = False
        if self._own_store:
            self.store.close()

    def request_scan(self) -> None:
        """Ask for a reconcile scan at the next loop iteration (thread-safe)."""
        self._scan_requested.set()
        self.hints.wake()

    def _on_overflow(self) -> None:
        self.counters.add("overflows")
        logger.warning(
            "filesystem events were lost (queue overflow): rescanning %s", self.directory
        )
        self.request_scan()

    @property
    def tracker(self) -> Tracker:
        """The files waiting to be registered or rejected."""
        return self.registrar.tracker

    def stats(self) -> dict[str, int]:
        """Running counters (thread-safe), plus the candidates waiting now."""
        snap = self.counters.snapshot()
        snap["pending"] = len(self.tracker)
        return snap

    def request_stop(self) -> None:
        """Finish the current file, then leave :meth:`run` (thread-safe)."""
        self._stop.set()
        self.hints.wake()

    def run(self, stop_event: threading.Event | None = None) -> dict[str, int]:
        """The daemon loop, until ``stop_event`` is set or :meth:`request_stop` is called.

        The file being inspected or registered is finished first. Registry failures
        never end the loop: the work is retried after :data:`DB_RETRY_S`
        (``db_errors`` counts them). Other exceptions are bugs and propagate.

        Returns:
            The final counters (:meth:`stats`).
        """

        def stopping() -> bool:
            return self._stop.is_set() or (stop_event is not None and stop_event.is_set())

        try:
            if not self._started:
                self.start()
            while not stopping():
                delay = min(self.step(), MAX_WAIT_S)
                if stopping():
                    break
                if self._db_retry_at is not None:
                    self._stop.wait(delay)  # hints may be waiting: do not spin
                else:
                    self.hints.wait(delay)
        finally:
            self.supervisor.stop()
            self._overflow.remove()
            self._observer_on = False
        logger.info("ingest of %s stopped: %s", self.directory, self.stats())
        return self.stats()

    def _guarded(self, work: Callable[[], object]) -> bool:
        """Run registry work; on a registry failure log it and back off (False)."""
        try:
            work()
        except (SQLAlchemyError, RegistryError) as exc:
            if self._raise_db_errors:
                raise
            self.counters.add("db_errors")
            self._db_retry_at = self.clock() + timedelta(seconds=DB_RETRY_S)
            self._scan_requested.set()  # after the failure, the scan heals what was missed
            logger.error("registry error (retrying in %.0f s): %s", DB_RETRY_S, exc)
            return False
        self._db_retry_at = None
        return True

    def _check_observer(self) -> None:
        if self.config.use_observer and self._started and self.supervisor.check():
            self.counters.add("observer_restarts")
            self._observer_on = True
            self._scan_requested.set()

    def step(self) -> float:
        """One loop iteration without sleeping; returns the seconds until work is due."""
        self._check_observer()
        now = self.clock()
        if self._db_retry_at is not None and now < self._db_retry_at:
            return (self._db_retry_at - now).total_seconds()
        if not self._guarded(self._work):
            return DB_RETRY_S
        return self._seconds_until_due()

    def _work(self) -> None:
        now = self.clock()
        self.drain_hints()
        if self._scan_requested.is_set() or self._next_scan_at is None or now >= self._next_scan_at:
            self._scan_requested.clear()
            self.scan(origin="scan" if self._baseline_done else "startup")
            self._baseline_done = self._observer_on or not self.config.use_observer
        self.drain_hints()
        self.registrar.process_due(limit=self.config.batch_size)
        now = self.clock()
        if not self.tracker.due(now, 1) and (
            self._next_expire_at is None or now >= self._next_expire_at
        ):
            self.expire(now)

    def _seconds_until_due(self) -> float:
        now = self.clock()
        times = [t for t in (self._next_scan_at, self._next_expire_at) if t is not None]
        nxt = self.tracker.next_due_at()
        if nxt is not None:
            times.append(nxt)
        if len(self.hints) or self._scan_requested.is_set() or not times:
            return 0.0
        return max((min(times) - now).total_seconds(), 0.0)

    # -- discovery ------------------------------------------------------------------

    def _ignore(self, name: str, kind: NameKind) -> None:
        self.counters.add("ignored")
        if self.registrar.journal is not None:
            self.registrar.journal.ignored += 1
        if name in self._logged_ignored:
            return
        if len(self._logged_ignored) >= _MAX_LOGGED_IGNORED:
            self._logged_ignored.clear()
        self._logged_ignored.add(name)
        if kind is NameKind.UNDECODABLE:
            logger.warning("ignoring %r in %s: the name is not UTF-8", name, self.directory)
        else:
            logger.debug("ignoring %s in %s (%s name)", name, self.directory, kind)

    def drain_hints(self, limit: int | None = None) -> int:
        """Stat the paths the observer reported and admit them; returns how many."""
        paths = self.hints.drain(limit or self.config.batch_size * 8)
        found: dict[str, FileStat] = {}
        for raw in paths:
            path = Path(raw)
            if path.parent != self.directory:
                continue  # only files directly in the watched directory
            kind = classify_name(path.name)
            if kind not in CANDIDATE_KINDS:
                continue
            st = stat_file(path)
            if st is not None:
                found[path.name] = st
        if found:
            try:
                self.registrar.admit(found, "event", hinted=True)
            except BaseException:
                for raw in paths:  # keep the hints for the next attempt
                    self.hints.put(raw)
                raise
            self.counters.add("event_hints", len(found))
        return len(paths)

    def scan(self, origin: str = "scan") -> int:
        """Reconcile scan: the source of truth. Returns the candidates waiting afterwards.

        Raises:
            WatcherError: in ``--once`` mode when the directory cannot be listed.
        """
        now = self.clock()
        self._next_scan_at = now + timedelta(seconds=self.config.reconcile_interval_s)
        listing = scan_directory(self.directory)
        self.counters.add("scans")
        if not listing.ok:
            if self._raise_db_errors:
                raise WatcherError(f"cannot list {self.directory}: {listing.error}")
            return len(self.tracker)
        for name, kind in listing.ignored:
            self._ignore(name, kind)
        self.registrar.admit(listing.files, origin, hinted=False)
        self.registrar.forget_absent(set(listing.files))
        self.registrar.reconcile_registry(set(listing.files))
        return len(self.tracker)

    def expire(self, now: datetime | None = None) -> int:
        """Apply the incomplete-group timeout policy now; returns the groups it moved."""
        now = now or self.clock()
        self._next_expire_at = now + timedelta(seconds=self.config.expire_interval_s)
        return self.registrar.expire(now)

    # -- one pass -----------------------------------------------------------------------

    def run_once(self) -> IngestReport:
        """One scan, every file that can be decided now, then the timeout pass.

        Nothing waits: files not settled yet are reported as pending, as are files
        still within their validation grace. Registry errors are raised.
        """
        self._raise_db_errors = True
        journal = Journal(self.directory, self.root_id, self.clock())
        self.registrar.journal = journal
        try:
            self.scan(origin="startup")
            self.registrar.process_due()  # one look at every file that is due now
            self.expire()
            return journal.report(self.tracker.candidates.values(), self.clock())
        finally:
            self.registrar.journal = None
            self._raise_db_errors = False


def ingest_once(
    settings: Settings,
    *,
    store: JobStore | None = None,
    clock: Clock | None = None,
) -> IngestReport:
    """One ingest pass over ``paths.incoming`` (``dsa-stream ingest --once``).

    The registry must be migrated (``upgrade_registry(settings)``).

    Raises:
        WatcherError: when the incoming directory cannot be listed.
        RegistryError: when the registry fails.
    """
    with Ingestor(settings, store=store, clock=clock) as ingestor:
        return ingestor.run_once()
