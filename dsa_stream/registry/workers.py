"""Worker identity and liveness (reliability §6 lesson (a), §7.4 reap step 1).

A worker row records who a process is: a uuid, host, pid, the kernel boot id
(``/proc/sys/kernel/random/boot_id``), the process start time (field 22 of
``/proc/<pid>/stat``, which tells a live process from a reused pid), the code
version and the configuration hash. A worker is declared ``dead`` when

* its heartbeat is older than ``stale_worker_leases`` x lease (any host), or
* it runs on this host and its pid is gone or a zombie, its start time differs
  (pid reused) or the boot id differs (the host rebooted).

Its running jobs are then requeued by the reaper (the expiry counts as an attempt).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import bindparam, select, update

from dsa_stream import __version__
from dsa_stream.exceptions import LeaseLostError
from dsa_stream.registry.models import workers
from dsa_stream.registry.records import Record
from dsa_stream.registry.states import LIVE_WORKER_STATES, StopMode, WorkerState
from dsa_stream.registry.txn import Txn, clip

logger = logging.getLogger(__name__)

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_LIVE = [str(s) for s in LIVE_WORKER_STATES]


class WorkerNotActiveError(LeaseLostError):
    """The worker was declared dead or stopped (or asked to stop); it must exit."""


class WorkerIdentity(Record):
    """Who a worker process is (one ``workers`` row)."""

    id: str
    host: str
    pid: int
    boot_id: str
    proc_start: str
    code_version: str
    config_hash: str

    @classmethod
    def current(
        cls,
        config_hash: str,
        *,
        code_version: str = __version__,
        worker_id: str | None = None,
    ) -> WorkerIdentity:
        """The identity of the calling process (a new uuid unless ``worker_id``)."""
        pid = os.getpid()
        return cls(
            id=worker_id or str(uuid.uuid4()),
            host=this_host(),
            pid=pid,
            boot_id=read_boot_id(),
            proc_start=proc_start_time(pid) or "unknown",
            code_version=code_version,
            config_hash=config_hash,
        )


class WorkerStart(Record):
    """What :meth:`JobStore.start_worker` found and did."""

    worker_id: str
    stale_workers: tuple[str, ...]
    requeued_jobs: tuple[int, ...]
    dead_jobs: tuple[int, ...]


@cache
def this_host() -> str:
    """This host's name as recorded in ``workers.host``."""
    return socket.gethostname()


def read_boot_id() -> str:
    """The kernel's boot id (changes at every boot); ``unknown`` where unavailable."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return "unknown"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def proc_start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def local_liveness_problem(pid: int, proc_start: str, boot_id: str) -> str | None:
    """Why a worker recorded on this host cannot be alive, or None if it may be."""
    current_boot = read_boot_id()
    if boot_id != current_boot and "unknown" not in (boot_id, current_boot):
        return "host rebooted since the worker started (boot id changed)"
    fields = _stat_fields(pid)
    if fields is None:
        return f"pid {pid} is gone"
    if fields[0] in ("Z", "X"):
        return f"pid {pid} is a zombie"
    if proc_start != "unknown" and len(fields) > 19 and fields[19] != proc_start:
        return f"pid {pid} now belongs to another process (start time differs)"
    return None


def register(txn: Txn, identity: WorkerIdentity) -> None:
    """Insert the worker row in state ``active``."""
    txn.conn.execute(
        workers.insert().values(
            **identity.model_dump(),
            started_at=txn.now,
            heartbeat_at=txn.now,
            state=str(WorkerState.ACTIVE),
        )
    )
    logger.info(
        "worker %s registered (host %s pid %s, version %s)",
        identity.id,
        identity.host,
        identity.pid,
        identity.code_version,
    )


def sweep(txn: Txn, *, stale_after_s: float) -> list[str]:
    """Declare dead the workers that cannot be alive (see the module docstring)."""
    cutoff = txn.now - timedelta(seconds=stale_after_s)
    rows = txn.conn.execute(
        select(
            workers.c.id,
            workers.c.host,
            workers.c.pid,
            workers.c.boot_id,
            workers.c.proc_start,
            workers.c.heartbeat_at,
        ).where(workers.c.state.in_(_LIVE))
    ).all()
    host = this_host()
    dead: list[str] = []
    for row in rows:
        reason = None
        if row.heartbeat_at < cutoff:
            age = (txn.now - row.heartbeat_at).total_seconds()
            reason = f"no heartbeat for {age:.0f} s"
        elif row.host == host:
            reason = local_liveness_problem(row.pid, row.proc_start, row.boot_id)
        if reason is not None and mark_dead(txn, row.id, reason):
            dead.append(row.id)
    return dead


def mark_dead(txn: Txn, worker_id: str, reason: str) -> bool:
    """Declare one live worker dead; returns whether it was live."""
    result = txn.conn.execute(
        update(workers)
        .where(workers.c.id == worker_id, workers.c.state.in_(_LIVE))
        .values(state=str(WorkerState.DEAD), stopped_at=txn.now, reason=clip(reason))
    )
    if result.rowcount == 1:
        logger.warning("worker %s declared dead: %s", worker_id, reason)
        return True
    return False


def heartbeat(txn: Txn, worker_id: str) -> StopMode | None:
    """Renew a worker's own heartbeat; returns the operator's stop request, if any.

    Raises:
        WorkerNotActiveError: if the worker was declared dead or stopped.
    """
    row = txn.conn.execute(
        update(workers)
        .where(workers.c.id == worker_id, workers.c.state.in_(_LIVE))
        .values(heartbeat_at=txn.now)
        .returning(workers.c.stop_requested)
    ).first()
    if row is None:
        raise WorkerNotActiveError(f"worker {worker_id} is no longer active (dead or stopped)")
    return StopMode(row.stop_requested) if row.stop_requested else None


def request_stop(txn: Txn, worker_id: str, mode: StopMode) -> bool:
    """Ask a live worker to drain or stop; it claims nothing more from now on."""
    result = txn.conn.execute(
        update(workers)
        .where(workers.c.id == worker_id, workers.c.state.in_(_LIVE))
        .values(stop_requested=str(mode), state=str(WorkerState.DRAINING))
    )
    return result.rowcount == 1


def stop(txn: Txn, worker_id: str, reason: str = "stopped") -> bool:
    """Mark a worker stopped (clean exit)."""
    result = txn.conn.execute(
        update(workers)
        .where(workers.c.id == worker_id, workers.c.state.in_(_LIVE))
        .values(
            state=str(WorkerState.STOPPED),
            stopped_at=txn.now,
            current_job_id=None,
            reason=clip(reason),
        )
    )
    return result.rowcount == 1


_SET_CURRENT = (
    update(workers)
    .where(workers.c.id == bindparam("b_worker"))
    .values(current_job_id=bindparam("b_job"))
)
_CLEAR_CURRENT = (
    update(workers)
    .where(workers.c.id == bindparam("b_worker"), workers.c.current_job_id == bindparam("b_job"))
    .values(current_job_id=None)
)


def set_current_job(txn: Txn, worker_id: str, job_id: int) -> None:
    """Record the job a worker is running."""
    txn.conn.execute(_SET_CURRENT, {"b_worker": worker_id, "b_job": job_id})


def clear_current_job(txn: Txn, worker_id: str, job_id: int) -> None:
    """Forget that a worker runs ``job_id`` (no-op if it moved on)."""
    txn.conn.execute(_CLEAR_CURRENT, {"b_worker": worker_id, "b_job": job_id})
