"""The registrar: the single writer of file rows for one incoming directory.

It turns sightings (from scans or events) into candidates, skipping versions the
registry already holds without reading them; it settle-checks, inspects and then
registers (group assembly and the convert job in the same transaction), retries
or rejects each due candidate; it reconciles the registry with the disk
(registered files gone -> ``missing``, rejections of removed files closed) and
applies the incomplete-group timeout. :class:`~dsa_stream.watcher.ingest.Ingestor`
drives it; everything here runs on the ingestor's one thread.

Registry failures (``SQLAlchemyError``, ``RegistryError``) propagate to the caller,
which backs off; the candidate concerned is looked at again after ``DB_RETRY_S``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError

from dsa_stream import naming
from dsa_stream.config import GroupingConfig, WatcherConfig
from dsa_stream.exceptions import NamingError, RegistryError
from dsa_stream.registry.files import (
    FileFacts,
    RegisterOutcome,
    RegisterResult,
    expire_incomplete_groups,
    mark_file_missing,
)
from dsa_stream.registry.jobstore import JobStore
from dsa_stream.registry.rejections import (
    KnownPath,
    RejectionFacts,
    close_rejection,
    known_paths,
    open_rejection_paths,
    record_rejection,
    register_resolving,
    registered_paths,
)
from dsa_stream.watcher.inspect import FileProblem, file_checksum, inspect_subband_file
from dsa_stream.watcher.journal import Journal
from dsa_stream.watcher.report import Counters
from dsa_stream.watcher.scan import FileStat, NameKind, classify_name, stat_file
from dsa_stream.watcher.tracker import Candidate, Tracker

logger = logging.getLogger(__name__)

#: Delay before looking at a file again after the registry failed.
DB_RETRY_S = 5.0

Clock = Callable[[], datetime]


class IngestEvent(BaseModel):
    """One file registered (for listeners such as the latency benchmark)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rel_path: str
    outcome: str
    group_key: str
    first_seen_at: datetime
    last_change: datetime
    """The file's last change on disk (mtime/ctime)."""
    settled_at: datetime
    """When the file was found settled (inspection began)."""
    committed_at: datetime
    """When the registration transaction had committed."""
    convert_job_id: int | None


Listener = Callable[[IngestEvent], None]


class Registrar:
    """Candidates of one directory and what becomes of them (module docstring).

    Args:
        directory: The incoming directory.
        root_id: Its root id in the registry.
        store: The registry.
        config: Settle, grace, checksum and name rules.
        grouping: Group rules (passed to the registry).
        clock: Wall clock for bookkeeping.
        counters: Where the running counters go.
        events_live: True while a file observer runs (for ``files_found_by_scan_only``).
        listener: Called after every registration.
    """

    def __init__(
        self,
        directory: Path,
        root_id: str,
        store: JobStore,
        config: WatcherConfig,
        grouping: GroupingConfig,
        clock: Clock,
        counters: Counters,
        events_live: Callable[[], bool],
        listener: Listener | None = None,
    ) -> None:
        self.directory = directory
        self.root_id = root_id
        self.store = store
        self.config = config
        self.grouping = grouping
        self.clock = clock
        self.counters = counters
        self.events_live = events_live
        self.listener = listener
        self.tracker = Tracker(config)
        self.known: dict[str, tuple[int, int]] = {}
        """Versions the registry holds, by path (filled lazily from the database)."""
        self.journal: Journal | None = None
        """Set during one pass (``--once``) to collect the report."""

    def admit(self, found: dict[str, FileStat], origin: str, *, hinted: bool) -> None:
        """Turn sightings into candidates, skipping versions the registry holds."""
        now = self.clock()
        lookup = [
            p
            for p, st in found.items()
            if p not in self.tracker and self.known.get(p) != st.fingerprint
        ]
        held: dict[str, KnownPath] = {}
        if lookup:
            with self.store.engine.connect() as conn:
                held = known_paths(conn, self.root_id, lookup)
        for rel_path, st in found.items():
            if self.journal is not None:
                self.journal.files_seen.add(rel_path)
            if rel_path in self.tracker:
                self.tracker.observe(rel_path, st, now, origin=origin, hinted=hinted)
                continue
            known = held.get(rel_path)
            if known is not None and known.holds(*st.fingerprint):
                self.known[rel_path] = st.fingerprint
                self.counters.add("unchanged")  # once per process, not at every scan
            if self.known.get(rel_path) == st.fingerprint:
                if self.journal is not None:
                    self.journal.unchanged.add(rel_path)
                continue
            self.tracker.observe(rel_path, st, now, origin=origin, hinted=hinted)

    def forget_absent(self, on_disk: set[str]) -> None:
        """After a scan: drop what is no longer on disk from memory."""
        for rel_path in [p for p in self.known if p not in on_disk]:
            del self.known[rel_path]  # bounded by the files on disk
        for rel_path in [p for p in self.tracker.candidates if p not in on_disk]:
            if stat_file(self.directory / rel_path) is None:
                self.tracker.drop(rel_path)
                self.counters.add("vanished")
                logger.info("%s vanished before it could be registered", rel_path)

    def reconcile_registry(self, on_disk: set[str]) -> None:
        """Registered files gone from disk -> missing; rejections of removed files closed."""
        with self.store.engine.connect() as conn:
            gone = registered_paths(conn, self.root_id) - on_disk
            removed = open_rejection_paths(conn, self.root_id) - on_disk
        for rel_path in sorted(gone):
            if stat_file(self.directory / rel_path) is not None:
                continue
            if mark_file_missing(self.store, self.root_id, rel_path):
                self.known.pop(rel_path, None)
                self.counters.add("missing")
                logger.warning("registered file %s is no longer on disk: marked missing", rel_path)
                if self.journal is not None:
                    self.journal.missing.append(rel_path)
        for rel_path in sorted(removed):
            if stat_file(self.directory / rel_path) is not None:
                continue
            closed = close_rejection(self.store, self.root_id, rel_path)
            self.known.pop(rel_path, None)
            self._count_resolved(len(closed))

    def _count_resolved(self, n: int) -> None:
        if n:
            self.counters.add("rejections_resolved", n)
            if self.journal is not None:
                self.journal.rejections_resolved += n

    def process_due(self, limit: int | None = None) -> int:
        """Settle-check, inspect and register or reject up to ``limit`` due candidates.

        Raises:
            SQLAlchemyError, RegistryError: the registry failed (the candidate is
                looked at again after :data:`DB_RETRY_S`).
        """
        due = self.tracker.due(self.clock(), limit)
        for cand in due:
            try:
                self._process(cand)
            except (SQLAlchemyError, RegistryError):
                self.tracker.defer(cand, self.clock(), DB_RETRY_S)
                raise
        return len(due)

    def _process(self, cand: Candidate) -> None:
        path = self.directory / cand.rel_path
        now = self.clock()
        st = stat_file(path)
        if st is None:
            self.tracker.drop(cand.rel_path)
            self.counters.add("vanished")
            logger.info("%s vanished before it could be registered", cand.rel_path)
            return
        if st != cand.stat:
            self.tracker.observe(cand.rel_path, st, now, origin=cand.origin)
            return
        if not self.tracker.settled(cand, now):
            return
        if classify_name(cand.rel_path) is NameKind.MISNAMED:
            self._reject(cand, _misnamed_reason(cand.rel_path), retryable=False)
            return
        cfg = self.config
        try:
            info = inspect_subband_file(
                path,
                expected_times=cfg.expected_integrations,
                filename_tolerance_s=cfg.filename_tolerance_s,
                checksum=cfg.checksum,
            )
        except FileProblem as problem:
            self._on_problem(cand, problem, now)
            return
        if (info.size, info.mtime_ns) != cand.stat.fingerprint:
            self.tracker.observe(cand.rel_path, stat_file(path) or st, now, origin=cand.origin)
            return
        facts = FileFacts(
            root_id=self.root_id,
            rel_path=cand.rel_path,
            size=info.size,
            mtime_ns=info.mtime_ns,
            checksum=info.checksum,
            obs_time=info.obs_start,
            subband=info.subband,
            group_key=info.group_key,
            dec_deg=info.dec_deg,
            first_seen_at=cand.first_seen_at,
        )
        result, resolved = register_resolving(self.store, facts, self.grouping)
        self.tracker.drop(cand.rel_path)
        self.known[cand.rel_path] = cand.stat.fingerprint
        self._count_resolved(len(resolved))
        self._count_scan_only(cand)
        self._record_registration(cand, result)

    def _on_problem(self, cand: Candidate, problem: FileProblem, now: datetime) -> None:
        reason = str(problem)
        if problem.permanent:
            self._reject(cand, reason, retryable=False)
        elif self.tracker.grace_expired(cand, now):
            grace = self.config.validation_grace_s
            self._reject(
                cand, f"still invalid {grace:.0f} s after its last change: {reason}", retryable=True
            )
        else:
            when = self.tracker.retry_later(cand, now, reason)
            self.counters.add("retries")
            logger.info(
                "%s not valid yet (%s); next look at %s",
                cand.rel_path,
                reason,
                when.isoformat(timespec="seconds"),
            )

    def _reject(self, cand: Candidate, reason: str, *, retryable: bool) -> None:
        path = self.directory / cand.rel_path
        checksum = None
        if self.config.checksum:
            try:
                checksum = file_checksum(path)
            except OSError:
                checksum = None
        facts = RejectionFacts(
            root_id=self.root_id,
            rel_path=cand.rel_path,
            size=cand.stat.size,
            mtime_ns=cand.stat.mtime_ns,
            checksum=checksum,
            reason=reason,
            retryable=retryable,
            attempts=cand.attempts + 1,
            first_seen_at=cand.first_seen_at,
        )
        result = record_rejection(self.store, facts)
        self.tracker.drop(cand.rel_path)
        self.known[cand.rel_path] = cand.stat.fingerprint
        self._count_scan_only(cand)
        if result.created:
            self.counters.add("rejected")
        if self.journal is not None:
            self.journal.reject(cand.rel_path, reason, retryable)

    def _count_scan_only(self, cand: Candidate) -> None:
        """A file a later scan found that the (running) observer never reported."""
        if cand.origin == "scan" and not cand.hinted and self.events_live():
            self.counters.add("files_found_by_scan_only")
            logger.info("%s was found by the reconcile scan only (missed event)", cand.rel_path)

    def _record_registration(self, cand: Candidate, result: RegisterResult) -> None:
        outcome = RegisterOutcome(result.outcome)
        counter = {
            RegisterOutcome.REGISTERED: "registered",
            RegisterOutcome.LATE: "late",
            RegisterOutcome.UNCHANGED: "unchanged",
        }.get(outcome, "quarantined")
        self.counters.add(counter)
        if outcome in (RegisterOutcome.REGISTERED, RegisterOutcome.LATE):
            logger.info(
                "registered %s: group %s (%s, %d subbands)",
                cand.rel_path,
                result.group_key,
                result.group_state,
                result.n_present,
            )
        if result.convert_job_id is not None:
            self.counters.add("groups_completed")
            self.counters.add("jobs_enqueued")
        if self.journal is not None:
            self.journal.registration(cand.rel_path, result)
        if self.listener is not None:
            self._notify(cand, result)

    def _notify(self, cand: Candidate, result: RegisterResult) -> None:
        assert self.listener is not None
        event = IngestEvent(
            rel_path=cand.rel_path,
            outcome=str(result.outcome),
            group_key=result.group_key,
            first_seen_at=cand.first_seen_at,
            last_change=cand.last_change,
            settled_at=cand.settled_at or cand.stable_since,
            committed_at=self.clock(),
            convert_job_id=result.convert_job_id,
        )
        try:
            self.listener(event)
        except Exception:
            logger.exception("ingest listener failed")

    def expire(self, now: datetime) -> int:
        """Apply the incomplete-group timeout policy; returns the groups it moved."""
        expired = expire_incomplete_groups(self.store, self.grouping, now=now)
        for g in expired:
            self.counters.add("groups_expired")
            if g.convert_job_id is not None:
                self.counters.add("jobs_enqueued")
        if self.journal is not None:
            self.journal.expired(expired)
        return len(expired)


def _misnamed_reason(rel_path: str) -> str:
    try:
        naming.parse_subband_filename(rel_path)
    except NamingError as exc:
        return str(exc)
    return f"not a DSA-110 subband file name: {rel_path!r}"
