"""The streaming daemon (``dsa-stream run``): ingest, reaper and the worker in one service.

Start-up, in order: take the site lock (:mod:`~dsa_stream.daemon.lock`; a second
instance exits with the holder's pid), migrate the registry (``upgrade_registry``),
open the ``/health`` + ``/metrics`` endpoint, then start three threads:

* ``worker``: the sequential :class:`~dsa_stream.pipeline.worker.Worker` with the
  handlers of :func:`~dsa_stream.pipeline.handlers.default_handlers`, gated by the
  disk and memory guards (:mod:`~dsa_stream.daemon.guards`);
* ``ingest``: the :class:`~dsa_stream.watcher.Ingestor` (start-up reconcile scan,
  filesystem events, periodic scans, incomplete-group timeouts);
* ``reaper``: a reaper pass every ``worker.reap_interval_s``, also while a long
  stage runs (the worker itself reaps only between jobs).

The main thread supervises: it sends systemd ``READY=1`` and ``WATCHDOG=1`` (while
every thread lives and the worker loop turns or a stage runs), aborts the stage
when an operator asks to kill this worker through the registry (``dsa-stream
workers kill``), and writes the status file (:mod:`~dsa_stream.daemon.state`).

Stopping: the first SIGTERM/SIGINT lets the running stage finish (ingest stops after
its current file), then the daemon exits 0; a second aborts the stage (its job is
requeued at once) and the daemon exits 3. An operator drain ends the same way as
the first signal. A crashed thread stops the others and the daemon exits 1.

``--burst`` (:meth:`Daemon.run` with ``burst=True``): one ingest pass, then the
worker until no queued or running job of its kinds is left (retries in backoff
included); when that pass found files still settling, one more pass and worker
round after ``watcher.settle_s``. No endpoint is served. Exit 0 when done.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from dsa_stream.config import Settings
from dsa_stream.daemon.guards import DiskGuard, DiskProbe, Guards, MemoryGuard, MemoryProbe
from dsa_stream.daemon.guards import available_memory as default_memory_probe
from dsa_stream.daemon.guards import free_bytes as default_disk_probe
from dsa_stream.daemon.health import RegistryView, health, read_registry
from dsa_stream.daemon.httpd import OpsServer
from dsa_stream.daemon.lock import SiteLock, lock_path
from dsa_stream.daemon.metrics import render
from dsa_stream.daemon.orphans import WORKER_ENV, kill_orphans
from dsa_stream.daemon.sdnotify import Notifier
from dsa_stream.daemon.state import DaemonSnapshot, status_path, write_status
from dsa_stream.exceptions import ConfigError, RegistryError
from dsa_stream.logctx import log_context
from dsa_stream.pipeline.context import Handler, PipelineContext
from dsa_stream.pipeline.worker import Worker, WorkerReport
from dsa_stream.registry import JobStore, StopMode, make_engine, upgrade_registry
from dsa_stream.registry.db import db_now
from dsa_stream.registry.models import jobs, workers
from dsa_stream.registry.states import JobState, WorkerState
from dsa_stream.watcher.events import ObserverFactory
from dsa_stream.watcher.ingest import Ingestor

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
#: A second signal or an operator kill aborted the running stage (job requeued).
EXIT_ABORTED = 3
#: How long a stopping daemon waits for the ingest and reaper threads.
JOIN_TIMEOUT_S = 60.0


class DaemonReport(BaseModel):
    """What one :meth:`Daemon.run` did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: str
    exit_code: int
    reason: str
    registry_revision: str | None
    workers: tuple[WorkerReport, ...]
    ingest: dict[str, int]
    """Service: the ingestor's counters. Burst: totals of the ingest passes."""
    pending_files: tuple[str, ...] = ()
    """Burst: files still settling or not valid yet after the last pass."""


class Daemon:
    """The service of the module docstring.

    Args:
        settings: The site's settings (``daemon`` section for this class).
        handlers: Job kind -> handler (default: ``default_handlers()``).
        kinds: Kinds to claim (default: every kind with a handler).
        disk_probe: Free bytes of a path (tests inject a fake filesystem).
        memory_probe: Available memory in bytes.
        notifier: systemd notifier (default: from ``$NOTIFY_SOCKET``).
        observer_factory: The ingestor's watchdog observer factory (tests).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        handlers: Mapping[str, Handler] | None = None,
        kinds: Sequence[str] | None = None,
        disk_probe: DiskProbe | None = None,
        memory_probe: MemoryProbe | None = None,
        notifier: Notifier | None = None,
        observer_factory: ObserverFactory | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.daemon
        if handlers is None:
            from dsa_stream.pipeline.handlers import default_handlers

            handlers = default_handlers()
        self.handlers = dict(handlers)
        self.kinds = list(kinds) if kinds is not None else sorted(self.handlers)
        self.disk_probe = disk_probe or default_disk_probe
        self.memory_probe = memory_probe or default_memory_probe
        self.notifier = notifier or Notifier()
        self.observer_factory = observer_factory
        self.mode = "service"
        self.phase = "starting"
        self.started_at = datetime.now(UTC)
        self.worker: Worker | None = None
        self.ingestor: Ingestor | None = None
        self.http: OpsServer | None = None
        self.disk: DiskGuard | None = None
        self.memory: MemoryGuard | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._aborted = False
        self._stop_reason: str | None = None
        self._signals = 0
        self._crashed: dict[str, BaseException] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._reports: list[WorkerReport] = []
        self._read_engine: Engine | None = None
        self._status_file = status_path(settings)
        self._published: tuple[Any, ...] = ()
        self._published_at = 0.0
        self._pinged_at = 0.0

    # -- control (any thread, signal handlers) -------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        """Finish the running stage, stop ingesting, then exit.

        Safe in a signal handler: it only sets events (the worker, the ingest loop and
        the reaper watch ``_stop``; the ingest loop notices it within 0.5 s).
        """
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()
        self._wake.set()

    def abort(self, reason: str = "abort requested") -> None:
        """Kill the running stage (its job is requeued) and exit."""
        self._aborted = True
        self._stop_reason = reason  # an abort outranks the earlier stop request
        self.request_stop(reason)
        if self.worker is not None:
            self.worker.abort()

    def handle_signal(self, signum: int, _frame: FrameType | None = None) -> None:
        """First SIGTERM/SIGINT: :meth:`request_stop`; a second: :meth:`abort`."""
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            self.request_stop(f"{name}: finishing the running stage")
        else:
            self.abort(f"second signal ({name}): stage aborted")

    @contextlib.contextmanager
    def signal_handlers(self) -> Iterator[None]:
        """Install :meth:`handle_signal` for SIGTERM and SIGINT (main thread only)."""
        previous = {
            s: signal.signal(s, self.handle_signal) for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    # -- the run ----------------------------------------------------------------------

    def run(self, *, burst: bool = False) -> DaemonReport:
        """Run the service (or one burst) under the site lock (module docstring).

        Raises:
            SiteLockedError: another daemon holds the site.
            ConfigError: the incoming directory is missing, or the endpoint cannot bind.
            RegistryError: the registry cannot be migrated.
        """
        self.mode = "burst" if burst else "service"
        incoming = self.settings.paths.resolve("incoming")
        with SiteLock(lock_path(self.settings)):
            if not incoming.is_dir():
                raise ConfigError(f"the incoming directory {incoming} does not exist")
            revision = upgrade_registry(self.settings)
            store = JobStore.from_settings(self.settings)
            self._read_engine = make_engine(
                self.settings.registry_url(), self.settings.registry, write=False
            )
            exported = os.environ.get(WORKER_ENV)
            try:
                ctx = PipelineContext.create(self.settings, store)
                gate = self._guards(ctx)
                self._clear_earlier_run(store)
                if burst:
                    return self._run_burst(ctx, gate, revision)
                return self._run_service(ctx, gate, revision)
            finally:
                self.phase = "stopped"
                self._publish(force=True)
                self._read_engine.dispose()
                store.close()
                if exported is None:
                    os.environ.pop(WORKER_ENV, None)
                else:
                    os.environ[WORKER_ENV] = exported

    def _clear_earlier_run(self, store: JobStore) -> None:
        """Reap (a worker of a killed daemon is declared dead), then kill its orphans."""
        reaped = store.reap()
        if reaped.workers_dead or reaped.requeued:
            logger.warning(
                "earlier workers declared dead: %s; jobs requeued: %s",
                ", ".join(reaped.workers_dead) or "none",
                ", ".join(map(str, reaped.requeued)) or "none",
            )
        assert self._read_engine is not None
        with self._read_engine.connect() as conn:
            kill_orphans(conn)

    def _guards(self, ctx: PipelineContext) -> Guards:
        cfg = self.cfg
        self.disk = DiskGuard(
            ctx.roots, cfg.min_free_gib, cfg.disk_resume_margin_gib, self.disk_probe
        )
        if cfg.memory_guard:
            self.memory = MemoryGuard(
                cfg.memory_estimates_gib, cfg.memory_default_gib, self.memory_probe
            )
        return Guards(self.disk, self.memory, self._waiting_kinds)

    def _waiting_kinds(self) -> set[str]:
        assert self._read_engine is not None
        with self._read_engine.connect() as conn:
            now = db_now(conn)
            rows = conn.execute(
                select(jobs.c.kind)
                .distinct()
                .where(jobs.c.state == str(JobState.QUEUED), jobs.c.available_at <= now)
            )
            return {str(k) for k in rows.scalars()}

    def _new_worker(self, ctx: PipelineContext, gate: Guards) -> Worker:
        worker = Worker(ctx, self.handlers, kinds=self.kinds, poll_s=self.cfg.poll_s, gate=gate)
        self.worker = worker
        os.environ[WORKER_ENV] = worker.worker_id  # inherited by every stage process
        if self._aborted:
            worker.abort()
        return worker

    def _new_ingestor(self) -> Ingestor:
        ingestor = Ingestor(self.settings, observer_factory=self.observer_factory)
        self.ingestor = ingestor
        return ingestor

    def _thread(self, name: str, target: Callable[[], object]) -> threading.Thread:
        def body() -> None:
            try:
                target()
            except BaseException as exc:
                self._crashed[name] = exc
                logger.critical("the %s thread crashed", name, exc_info=True)
                self.request_stop(f"{name} thread crashed: {type(exc).__name__}: {exc}")
            finally:
                self._wake.set()

        thread = threading.Thread(target=body, name=f"dsa-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()
        return thread

    def _run_worker(self, worker: Worker, burst: bool) -> None:
        self._reports.append(worker.run(stop_event=self._stop, burst=burst))

    def _run_service(self, ctx: PipelineContext, gate: Guards, revision: str) -> DaemonReport:
        worker = self._new_worker(ctx, gate)
        if self.cfg.http_port:
            self.http = OpsServer(
                self.cfg.http_host, self.cfg.http_port, self.health_page, self.metrics_page
            )
        ingestor = self._new_ingestor()
        try:
            if self.http is not None:
                self.http.start()
            self._thread("worker", lambda: self._run_worker(worker, burst=False))
            self._thread("ingest", lambda: self._ingest(ingestor))
            self._thread("reaper", lambda: self._reap_loop(ctx.store))
            self.phase = "running"
            self.notifier.ready(f"worker {worker.worker_id[:8]} running")
            logger.info(
                "dsa-stream run: worker %s (kinds %s), watching %s",
                worker.worker_id,
                ",".join(self.kinds),
                ingestor.directory,
            )
            self._supervise()
            self.request_stop(self._stop_reason or f"worker exited: {self._worker_reason()}")
            self._enter_stopping()
            for name in ("ingest", "reaper"):
                self._threads[name].join(JOIN_TIMEOUT_S)
                if self._threads[name].is_alive():
                    logger.error("the %s thread did not stop within %.0f s", name, JOIN_TIMEOUT_S)
        finally:
            if self.http is not None:
                self.http.stop()
            ingestor.close()
        return self._report(revision, ingestor.stats(), ())

    def _ingest(self, ingestor: Ingestor) -> None:
        with log_context(stage="ingest"):
            ingestor.run(self._stop)

    def _reap_loop(self, store: JobStore) -> None:
        with log_context(stage="reaper"):
            while not self._stop.wait(self.settings.worker.reap_interval_s):
                try:
                    while store.reap().more and not self._stop.is_set():
                        pass
                except (SQLAlchemyError, RegistryError) as exc:
                    logger.warning("reaper pass failed (retrying): %s", exc)

    def _run_burst(self, ctx: PipelineContext, gate: Guards, revision: str) -> DaemonReport:
        ingestor = self._new_ingestor()
        totals = {"registered": 0, "rejected": 0, "groups_completed": 0, "jobs_enqueued": 0}
        pending: tuple[str, ...] = ()
        try:
            self.phase = "running"
            for _round in range(2):
                report = ingestor.run_once()
                totals["registered"] += report.registered
                totals["rejected"] += len(report.rejected)
                totals["groups_completed"] += len(report.groups_completed)
                totals["jobs_enqueued"] += len(report.jobs_enqueued)
                pending = report.pending_settle + tuple(n.rel_path for n in report.pending_retry)
                if self._stop.is_set():
                    break
                worker = self._new_worker(ctx, gate)
                self._thread("worker", functools.partial(self._run_worker, worker, True))
                self._supervise()
                if self._stop.is_set() or not report.pending_settle:
                    break
                self._stop.wait(self.settings.watcher.settle_s)
        finally:
            ingestor.close()
        return self._report(revision, totals, pending)

    def _worker_reason(self) -> str:
        return self._reports[-1].exit_reason if self._reports else "not started"

    def _report(
        self, revision: str, ingest: dict[str, int], pending: tuple[str, ...]
    ) -> DaemonReport:
        if self._crashed:
            code = EXIT_ERROR
        elif self._aborted:
            code = EXIT_ABORTED
        elif self._declared_dead():
            code = EXIT_ERROR
            self._stop_reason = "the worker was declared dead by a reaper"
        else:
            code = EXIT_OK
        reason = self._stop_reason or self._worker_reason()
        logger.info("dsa-stream run (%s) exits with %d: %s", self.mode, code, reason)
        return DaemonReport(
            mode=self.mode,
            exit_code=code,
            reason=reason,
            registry_revision=revision,
            workers=tuple(self._reports),
            ingest=ingest,
            pending_files=pending,
        )

    def _declared_dead(self) -> bool:
        if self.worker is None or self._read_engine is None:
            return False
        try:
            with self._read_engine.connect() as conn:
                state = conn.execute(
                    select(workers.c.state).where(workers.c.id == self.worker.worker_id)
                ).scalar_one_or_none()
        except SQLAlchemyError:
            return False
        return state == str(WorkerState.DEAD)

    # -- supervision --------------------------------------------------------------------

    def _supervise(self) -> None:
        """Until the worker thread ends: thread checks, kill requests, watchdog, status."""
        worker_thread = self._threads["worker"]
        while worker_thread.is_alive():
            self._wake.wait(self.cfg.supervisor_interval_s)
            self._wake.clear()
            for name, thread in self._threads.items():
                if name != "worker" and not thread.is_alive() and not self._stop.is_set():
                    self.request_stop(f"the {name} thread ended unexpectedly")
            self._check_kill_request()
            if self._stop.is_set():
                self._enter_stopping()
            self._ping_watchdog()
            self._publish()
        worker_thread.join()

    def _enter_stopping(self) -> None:
        """Once: phase ``stopping``, systemd ``STOPPING=1``, the status file."""
        if self.phase == "stopping":
            return
        self.phase = "stopping"
        logger.warning("stopping: %s", self._stop_reason or "stop requested")
        self.notifier.stopping(self._stop_reason or "")
        self._publish(force=True)

    def _check_kill_request(self) -> None:
        if self.worker is None or self._aborted or self._read_engine is None:
            return
        try:
            with self._read_engine.connect() as conn:
                mode = conn.execute(
                    select(workers.c.stop_requested).where(workers.c.id == self.worker.worker_id)
                ).scalar_one_or_none()
        except SQLAlchemyError as exc:
            logger.debug("cannot read this worker's stop request: %s", exc)
            return
        if mode == str(StopMode.KILL):
            logger.warning("an operator asked to kill this worker: aborting the running stage")
            self.abort("operator kill: stage aborted")

    def _alive(self) -> bool:
        """True while the service works: threads alive and the worker not wedged."""
        if any(not t.is_alive() for t in self._threads.values()) and not self._stop.is_set():
            return False
        snap = self.worker.snapshot() if self.worker is not None else None
        if snap is None or snap.state == "running" or snap.loop_age_s is None:
            return True
        interval = self.notifier.watchdog_interval_s or 0.0
        return snap.loop_age_s < max(4 * interval, 60.0, 4 * self.cfg.poll_s)

    def _ping_watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s
        if interval is None or time.monotonic() - self._pinged_at < interval:
            return
        if self._alive():
            self.notifier.watchdog()
            self._pinged_at = time.monotonic()
        else:
            logger.error("not pinging the systemd watchdog: the worker loop is wedged")

    # -- what it shows ------------------------------------------------------------------

    def snapshot(self) -> DaemonSnapshot:
        """The daemon's view of itself now."""
        identity = self.worker.identity if self.worker is not None else None
        wsnap = self.worker.snapshot() if self.worker is not None else None
        disk_free = self.disk.measure() if self.disk is not None else {}
        try:
            memory: int | None = self.memory_probe()
        except OSError:
            memory = None
        return DaemonSnapshot(
            pid=identity.pid if identity else 0,
            host=identity.host if identity else "",
            boot_id=identity.boot_id if identity else "unknown",
            proc_start=identity.proc_start if identity else "unknown",
            worker_id=identity.id if identity else "",
            mode=self.mode,
            phase=self.phase,
            started_at=self.started_at,
            updated_at=datetime.now(UTC),
            stop_reason=self._stop_reason,
            kinds=tuple(self.kinds),
            worker=wsnap,
            threads={name: t.is_alive() for name, t in self._threads.items()},
            paused_reason=wsnap.paused_reason if wsnap is not None else None,
            disk_free_bytes=disk_free,
            disk_min_free_bytes=dict(self.disk.min_free) if self.disk is not None else {},
            memory_available_bytes=memory,
            ingest=self.ingestor.stats() if self.ingestor is not None else {},
            http=self.http.address if self.http is not None else None,
        )

    def _publish(self, *, force: bool = False) -> None:
        """Write the status file (and systemd STATUS) when due or when something changed."""
        if self.worker is None:
            return
        snap = self.snapshot()
        w = snap.worker
        topic = (snap.paused_reason or "").split(":", 1)[0]
        signature = (snap.phase, w.state if w else None, w.job_id if w else None, topic)
        due = time.monotonic() - self._published_at >= self.cfg.status_interval_s
        if not (force or due or signature != self._published):
            return
        write_status(self._status_file, snap)
        if signature != self._published:
            self.notifier.status(_status_line(snap))
        self._published, self._published_at = signature, time.monotonic()

    def _read_view(self) -> tuple[RegistryView | None, str | None]:
        if self._read_engine is None:
            return None, "registry not open yet"
        worker_id = self.worker.worker_id if self.worker is not None else None
        try:
            with self._read_engine.connect() as conn:
                return read_registry(conn, self.settings, worker_id), None
        except (SQLAlchemyError, RegistryError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def health_page(self) -> dict[str, Any]:
        """The ``/health`` document."""
        view, error = self._read_view()
        return health(self.settings, self.snapshot(), view, error)

    def metrics_page(self) -> str:
        """The ``/metrics`` document."""
        snap = self.snapshot()
        view, error = self._read_view()
        return render(snap, view, health(self.settings, snap, view, error)["status"])


def _status_line(snap: DaemonSnapshot) -> str:
    """One line for ``systemctl status``."""
    w = snap.worker
    if snap.phase != "running":
        return f"{snap.phase}: {snap.stop_reason or ''}".strip()
    if w is not None and w.state == "running":
        return f"running job {w.job_id} ({w.kind} {w.group_key or ''})".strip()
    if snap.paused_reason:
        return f"held back: {snap.paused_reason}"
    return "idle"
