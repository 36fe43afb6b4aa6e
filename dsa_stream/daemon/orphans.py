"""Stage processes that outlived their worker (the daemon was killed with SIGKILL).

Stages run in their own process groups, so killing the daemon with ``kill -9`` does
not stop a running converter or imager: it would keep computing (and using memory)
next to the retry of its job. To find such orphans, the daemon exports
``DSA_STREAM_WORKER_ID=<its worker id>``; every stage child inherits it. At start-up
(after the reaper declared the old worker dead) and after ``workers kill``, the
processes of this host whose environment names a worker that the registry knows as
``dead`` or ``stopped`` are killed with their process groups (SIGKILL: the attempt
is already void, its lease is gone). Only worker ids of this registry are matched,
so processes of other sites and of live workers are never touched.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import defaultdict
from pathlib import Path

from sqlalchemy import Connection, select

from dsa_stream.registry.models import workers
from dsa_stream.registry.states import WorkerState
from dsa_stream.registry.workers import this_host

logger = logging.getLogger(__name__)

#: Environment variable naming the worker a stage process belongs to.
WORKER_ENV = "DSA_STREAM_WORKER_ID"
_MARK = WORKER_ENV.encode() + b"="


def processes_by_worker(proc: Path = Path("/proc")) -> dict[str, list[int]]:
    """Pids of this host's processes grouped by the worker id in their environment."""
    found: dict[str, list[int]] = defaultdict(list)
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's process
            continue
        for item in env.split(b"\0"):
            if item.startswith(_MARK):
                found[item[len(_MARK) :].decode(errors="replace")].append(int(entry.name))
                break
    return dict(found)


def kill_orphans(conn: Connection, *, only_worker: str | None = None) -> list[int]:
    """Kill the process groups of stage processes whose worker is dead or stopped.

    Args:
        conn: A registry connection (read only is enough).
        only_worker: Restrict to this worker id.

    Returns:
        The pids found and signalled.
    """
    by_worker = processes_by_worker()
    if only_worker is not None:
        by_worker = {k: v for k, v in by_worker.items() if k == only_worker}
    if not by_worker:
        return []
    rows = conn.execute(
        select(workers.c.id, workers.c.pid).where(
            workers.c.id.in_(list(by_worker)),
            workers.c.host == this_host(),
            workers.c.state.in_([str(WorkerState.DEAD), str(WorkerState.STOPPED)]),
        )
    ).all()
    killed: list[int] = []
    own_group = os.getpgrp()
    for row in rows:
        for pid in by_worker[row.id]:
            if pid == row.pid:
                continue  # the old daemon itself (only possible as a zombie)
            try:
                group = os.getpgid(pid)
                if group == own_group:
                    os.kill(pid, signal.SIGKILL)
                else:
                    os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                continue
            except PermissionError as exc:
                logger.error("cannot kill orphaned stage process %d: %s", pid, exc)
                continue
            killed.append(pid)
            logger.warning(
                "killed orphaned stage process %d (group %d) of %s worker %s",
                pid,
                group,
                "dead or stopped",
                row.id,
            )
    return killed
