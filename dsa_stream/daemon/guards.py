"""Disk-space and memory guards: pause claiming instead of failing jobs.

* :class:`DiskGuard`: while a guarded site directory (``daemon.min_free_gib``,
  staging and products by default) has less free space than its threshold, no job
  is claimed; claiming resumes once every directory has threshold +
  ``disk_resume_margin_gib`` (hysteresis). A directory whose free space cannot be
  measured (filesystem gone) also pauses.
* :class:`MemoryGuard`: a job kind whose estimate (``daemon.memory_estimates_gib``)
  exceeds the available memory is not claimed; smaller stages may still run.
* :class:`Guards` combines both into the worker's ``gate``
  (:data:`~dsa_stream.pipeline.worker.Gate`).

Probes are injectable (tests, other platforms): free bytes of a path
(``statvfs`` ``f_bavail``, what an unprivileged writer can use) and available
memory (psutil's ``available``: free + reclaimable cache).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

from dsa_stream.pipeline.worker import GateDecision

logger = logging.getLogger(__name__)

GIB = 2**30

DiskProbe = Callable[[Path], int]
MemoryProbe = Callable[[], int]


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged process may still write on the filesystem of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def available_memory() -> int:
    """Memory available to a new process without swapping (bytes)."""
    return int(psutil.virtual_memory().available)


def gib(n_bytes: float) -> str:
    """``n_bytes`` as a short GiB string."""
    return f"{n_bytes / GIB:.1f} GiB"


class DiskGuard:
    """Free-space thresholds of site directories, with hysteresis (module docstring).

    Args:
        dirs: Site directory name -> absolute path.
        min_free_gib: Directory name -> threshold (GiB); names not in ``dirs`` are ignored.
        resume_margin_gib: Extra free space needed to resume after a pause.
        probe: Free bytes of a path.
    """

    def __init__(
        self,
        dirs: Mapping[str, Path],
        min_free_gib: Mapping[str, float],
        resume_margin_gib: float = 0.0,
        probe: DiskProbe = free_bytes,
    ) -> None:
        self.dirs = {name: dirs[name] for name in min_free_gib if name in dirs}
        self.min_free = {name: int(min_free_gib[name] * GIB) for name in self.dirs}
        self.margin = int(resume_margin_gib * GIB)
        self.probe = probe
        self.paused = False
        self._free: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def free(self) -> dict[str, int | None]:
        """The free bytes of each guarded directory at the last check (None: unknown)."""
        with self._lock:
            return dict(self._free)

    def measure(self) -> dict[str, int | None]:
        """Measure every guarded directory now."""
        free: dict[str, int | None] = {}
        for name, path in self.dirs.items():
            try:
                free[name] = self.probe(path)
            except OSError as exc:
                logger.warning("cannot measure the free space of %s (%s): %s", name, path, exc)
                free[name] = None
        with self._lock:
            self._free = free
        return free

    def check(self) -> str | None:
        """Why claiming must pause now, or None (measures, applies the hysteresis)."""
        free = self.measure()
        problems = []
        for name, n in free.items():
            need = self.min_free[name] + (self.margin if self.paused else 0)
            if n is None:
                problems.append(f"free space of {name} ({self.dirs[name]}) cannot be measured")
            elif n < need:
                problems.append(
                    f"{name} ({self.dirs[name]}) has {gib(n)} free, needs {gib(need)}"
                    + (" to resume" if self.paused else "")
                )
        self.paused = bool(problems)
        return "disk: " + "; ".join(problems) if problems else None


class MemoryGuard:
    """Per-kind memory estimates against the available memory (module docstring).

    Args:
        estimates_gib: Job kind -> peak memory of its stage (GiB).
        default_gib: Estimate of kinds not in ``estimates_gib``.
        probe: Available memory (bytes).
    """

    def __init__(
        self,
        estimates_gib: Mapping[str, float],
        default_gib: float,
        probe: MemoryProbe = available_memory,
    ) -> None:
        self.estimates = {k: int(v * GIB) for k, v in estimates_gib.items()}
        self.default = int(default_gib * GIB)
        self.probe = probe
        self.last_available: int | None = None

    def estimate(self, kind: str) -> int:
        """Estimated peak memory of one stage of ``kind`` (bytes)."""
        return self.estimates.get(kind, self.default)

    def check(self, kinds: Sequence[str]) -> tuple[list[str], dict[str, int], int]:
        """Split ``kinds`` into those that fit now and those held back (with estimates).

        Returns:
            (fitting kinds, held kind -> estimate, available bytes).
        """
        available = self.probe()
        self.last_available = available
        fits = [k for k in kinds if self.estimate(k) <= available]
        held = {k: self.estimate(k) for k in kinds if k not in fits}
        return fits, held, available


class Guards:
    """The worker's gate: disk first (pauses everything), then memory (per kind).

    Args:
        disk: The disk guard (None: off).
        memory: The memory guard (None: off).
        waiting_kinds: Kinds with claimable queued jobs now; used only to word the
            reason (a held kind with nothing queued is not reported as waiting).
    """

    def __init__(
        self,
        disk: DiskGuard | None,
        memory: MemoryGuard | None,
        waiting_kinds: Callable[[], set[str]] | None = None,
    ) -> None:
        self.disk = disk
        self.memory = memory
        self.waiting_kinds = waiting_kinds

    def __call__(self, kinds: Sequence[str]) -> GateDecision:
        """The kinds that may be claimed now and why others wait."""
        if self.disk is not None:
            reason = self.disk.check()
            if reason is not None:
                return GateDecision((), reason)
        if self.memory is None:
            return GateDecision(tuple(kinds))
        fits, held, available = self.memory.check(kinds)
        if not held:
            return GateDecision(tuple(fits))
        waiting = self.waiting_kinds() if self.waiting_kinds is not None else set(held)
        blocked = {k: v for k, v in held.items() if k in waiting}
        if not blocked:
            return GateDecision(tuple(fits))
        parts = ", ".join(f"{k} needs {gib(v)}" for k, v in sorted(blocked.items()))
        return GateDecision(tuple(fits), f"memory: {parts}; {gib(available)} available")
