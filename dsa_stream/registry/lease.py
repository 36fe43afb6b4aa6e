"""Keeping a claimed job's lease alive from a background thread.

:class:`LeaseKeeper` renews the lease every ``heartbeat_interval_s`` while the
stage runs and tells the worker when to stop:

* ``lost`` is set when the store rejects the token (the job was reaped or
  finished by someone else) or when no renewal succeeded for ``self_fence_s``
  (a database outage: give up before the reaper hands the job to another
  worker, reliability §7.5);
* ``cancel_requested`` is set when the operator cancelled the job;
* ``stop_requested`` holds the operator's drain/kill request for the worker.

Callbacks (``on_lost``, ``on_cancel``) run on the heartbeat thread; use them to
kill the stage's process group. The keeper never touches the job's final state:
the worker calls ``complete``/``fail``/``mark_cancelled`` itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError

from dsa_stream.exceptions import LeaseLostError, RegistryError
from dsa_stream.registry.jobstore import JobStore
from dsa_stream.registry.records import Claim
from dsa_stream.registry.states import StopMode

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Context manager running the heartbeat thread of one claim (module docstring).

    Args:
        store: The :class:`~dsa_stream.registry.jobstore.JobStore` that made the claim.
        claim: The claim to keep alive.
        interval_s: Heartbeat period (default: the store's ``heartbeat_interval_s``).
        self_fence_s: Give up after this long without a successful renewal
            (default: the store's ``self_fence_s``).
        on_lost: Called once with the reason when the lease is lost.
        on_cancel: Called once when the operator cancels the job.
    """

    def __init__(
        self,
        store: JobStore,
        claim: Claim,
        *,
        interval_s: float | None = None,
        self_fence_s: float | None = None,
        on_lost: Callable[[str], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.claim = claim
        self.interval_s = interval_s or store.config.heartbeat_interval_s
        self.self_fence_s = self_fence_s or store.config.self_fence_s
        self.lost = threading.Event()
        self.cancel_requested = threading.Event()
        self.stop_requested: StopMode | None = None
        self.reason: str | None = None
        self._on_lost = on_lost
        self._on_cancel = on_cancel
        self._progress: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{claim.job_id}", daemon=True)

    def set_progress(self, fraction: float) -> None:
        """Report stage progress (0..1); sent with the next heartbeat."""
        self._progress = fraction

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()

    def _lose(self, reason: str) -> None:
        self.reason = reason
        self.lost.set()
        logger.warning("job %s: lease lost: %s", self.claim.job_id, reason)
        if self._on_lost is not None:
            self._on_lost(reason)

    def _beat(self) -> bool:
        """One renewal; returns False when the lease is lost (stop the thread)."""
        try:
            result = self.store.heartbeat(self.claim, progress=self._progress)
        except LeaseLostError as exc:
            self._lose(str(exc))
            return False
        if result.stop_requested is not None:
            self.stop_requested = result.stop_requested
        if result.cancel_requested and not self.cancel_requested.is_set():
            self.cancel_requested.set()
            logger.info("job %s: cancel requested by the operator", self.claim.job_id)
            if self._on_cancel is not None:
                self._on_cancel()
        return True

    def _run(self) -> None:
        last_ok = time.monotonic()
        while not self._done.wait(self.interval_s):
            try:
                if not self._beat():
                    return
                last_ok = time.monotonic()
            except (SQLAlchemyError, RegistryError) as exc:
                logger.warning("job %s: heartbeat failed: %s", self.claim.job_id, exc)
            silent = time.monotonic() - last_ok
            if silent > self.self_fence_s:
                self._lose(f"no successful heartbeat for {silent:.1f} s (self-fence)")
                return
