"""Operator control of workers: ``dsa-stream workers list|drain|kill`` (reliability §7.7).

Requests go through the registry, so any process on any host can ask:

* **drain**: ``stop_requested='drain'``: the worker claims nothing more, finishes its
  running stage and exits (a daemon exits 0 and systemd leaves it stopped);
* **kill**: ``stop_requested='kill'``: the daemon aborts its running stage within one
  supervisor interval (the job is requeued) and exits 3. When the worker runs on
  this host and its identity is confirmed (pid alive with the recorded process
  start time and boot id, so a reused pid is never signalled), it is also sent
  SIGTERM, and SIGKILL if it has not exited after a grace period. A reaper pass
  then requeues whatever it still held.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, select

from dsa_stream.daemon.orphans import kill_orphans
from dsa_stream.exceptions import RegistryError
from dsa_stream.registry import JobStore, StopMode
from dsa_stream.registry.models import jobs, workers
from dsa_stream.registry.states import LIVE_WORKER_STATES
from dsa_stream.registry.workers import local_liveness_problem, this_host


class WorkerTarget(BaseModel):
    """The identity of the worker an operator names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    host: str
    pid: int
    boot_id: str
    proc_start: str
    state: str
    current_job_id: int | None


class KillResult(BaseModel):
    """What :func:`kill_worker` did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker_id: str
    host: str
    pid: int
    requested: bool
    """The kill request was recorded in the registry (False: the worker was not live)."""
    signals: tuple[str, ...] = ()
    """Signals sent (only on this host, after the identity check)."""
    exited: bool | None = None
    """Whether the process is gone (None: not on this host, not checked)."""
    requeued_jobs: tuple[int, ...] = ()
    note: str = ""


def find_worker(conn: Connection, ident: str) -> WorkerTarget:
    """The worker whose id is ``ident`` or starts with it (the 8 characters of ``list``).

    Raises:
        RegistryError: no such worker, or the prefix is ambiguous.
    """
    cols = [workers.c[n] for n in WorkerTarget.model_fields]
    rows = conn.execute(select(*cols).where(workers.c.id.startswith(ident, autoescape=True))).all()
    exact = [r for r in rows if r.id == ident]
    if exact:
        rows = exact
    if not rows:
        raise RegistryError(f"no worker with id {ident!r} (see `dsa-stream workers list`)")
    if len(rows) > 1:
        raise RegistryError(f"worker id {ident!r} is ambiguous: {', '.join(r.id for r in rows)}")
    return WorkerTarget.model_validate(dict(rows[0]._mapping))


def current_job_kinds(conn: Connection, job_ids: list[int]) -> dict[int, str]:
    """Job id -> kind for the given jobs."""
    if not job_ids:
        return {}
    rows = conn.execute(select(jobs.c.id, jobs.c.kind).where(jobs.c.id.in_(job_ids)))
    return {int(r.id): str(r.kind) for r in rows}


def _is_live(target: WorkerTarget) -> bool:
    return target.state in {str(s) for s in LIVE_WORKER_STATES}


def drain_worker(store: JobStore, target: WorkerTarget) -> bool:
    """Ask a worker to finish its stage and stop; False when it is not live."""
    if not _is_live(target):
        return False
    return store.request_stop(target.id, StopMode.DRAIN)


def _wait_gone(target: WorkerTarget, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if local_liveness_problem(target.pid, target.proc_start, target.boot_id) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def kill_worker(
    store: JobStore,
    target: WorkerTarget,
    *,
    grace_s: float = 30.0,
    send: Callable[[int, int], None] = os.kill,
) -> KillResult:
    """Kill a worker (module docstring); ``send`` is ``os.kill`` (injectable for tests)."""
    requested = _is_live(target) and store.request_stop(target.id, StopMode.KILL)
    base = {"worker_id": target.id, "host": target.host, "pid": target.pid, "requested": requested}
    if target.host != this_host():
        note = (
            f"worker runs on {target.host}: kill requested through the registry; its daemon "
            "aborts the running stage at its next supervisor check"
            if requested
            else f"worker is {target.state}: nothing to do"
        )
        return KillResult(**base, note=note)
    problem = local_liveness_problem(target.pid, target.proc_start, target.boot_id)
    if problem is not None:
        reaped = store.reap()
        with store.engine.connect() as conn:
            orphans = kill_orphans(conn, only_worker=target.id)
        extra = f"; killed its orphaned stage processes {orphans}" if orphans else ""
        return KillResult(
            **base,
            exited=True,
            requeued_jobs=reaped.requeued,
            note=f"not signalled: {problem}{extra}",
        )
    sent = ["SIGTERM"]
    send(target.pid, signal.SIGTERM)
    gone = _wait_gone(target, grace_s)
    if not gone:
        sent.append("SIGKILL")
        send(target.pid, signal.SIGKILL)
        gone = _wait_gone(target, 10.0)
    reaped = store.reap() if gone else None
    orphans: list[int] = []
    if gone:
        with store.engine.connect() as conn:
            orphans = kill_orphans(conn, only_worker=target.id)
    note = "" if gone else "the process is still there after SIGKILL"
    if orphans:
        note = f"killed its orphaned stage processes {', '.join(map(str, orphans))}"
    return KillResult(
        **base,
        signals=tuple(sent),
        exited=gone,
        requeued_jobs=reaped.requeued if reaped is not None else (),
        note=note,
    )
