"""The record of one ingest pass, turned into an :class:`~.report.IngestReport`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from dsa_stream.registry.files import GroupExpiry, RegisterOutcome, RegisterResult
from dsa_stream.watcher.report import FileNote, GroupNote, IngestReport
from dsa_stream.watcher.tracker import Candidate


class Journal:
    """What happened to each file during one pass (``ingest --once``)."""

    def __init__(self, directory: Path, root_id: str, started_at: datetime) -> None:
        self.directory = directory
        self.root_id = root_id
        self.started_at = started_at
        self.files_seen: set[str] = set()
        self.ignored = 0
        self.unchanged: set[str] = set()
        self.registered = 0
        self.rejected: list[FileNote] = []
        self.quarantined: list[FileNote] = []
        self.late: list[FileNote] = []
        self.missing: list[str] = []
        self.groups_completed: list[GroupNote] = []
        self.groups_expired: list[GroupNote] = []
        self.jobs: list[int] = []
        self.rejections_resolved = 0

    def reject(self, rel_path: str, reason: str, retryable: bool) -> None:
        """A file recorded as not valid."""
        self.rejected.append(
            FileNote(rel_path=rel_path, outcome="rejected", reason=reason, retryable=retryable)
        )

    def registration(self, rel_path: str, result: RegisterResult) -> None:
        """A valid file handed to the registry, and what the registry did."""
        outcome = RegisterOutcome(result.outcome)
        note = FileNote(
            rel_path=rel_path,
            outcome=str(outcome),
            reason=result.reason,
            group_key=result.group_key,
        )
        if outcome is RegisterOutcome.REGISTERED:
            self.registered += 1
        elif outcome is RegisterOutcome.LATE:
            self.registered += 1
            self.late.append(note)
        elif outcome is RegisterOutcome.UNCHANGED:
            self.unchanged.add(rel_path)
        else:
            self.quarantined.append(note)
        if result.convert_job_id is not None:
            self.groups_completed.append(
                GroupNote(
                    group_key=result.group_key,
                    state=str(result.group_state),
                    convert_job_id=result.convert_job_id,
                )
            )
            self.jobs.append(result.convert_job_id)

    def expired(self, groups: Iterable[GroupExpiry]) -> None:
        """Groups the incomplete-group timeout moved."""
        for g in groups:
            self.groups_expired.append(
                GroupNote(
                    group_key=g.group_key,
                    state=str(g.state),
                    convert_job_id=g.convert_job_id,
                    missing_subbands=g.missing_subbands,
                )
            )
            if g.convert_job_id is not None:
                self.jobs.append(g.convert_job_id)

    def report(self, pending: Iterable[Candidate], finished_at: datetime) -> IngestReport:
        """The report, with the files still waiting at the end of the pass."""
        waiting = sorted(pending, key=lambda c: c.rel_path)
        return IngestReport(
            directory=str(self.directory),
            root_id=self.root_id,
            started_at=self.started_at,
            finished_at=finished_at,
            files_seen=len(self.files_seen),
            ignored=self.ignored,
            registered=self.registered,
            unchanged=len(self.unchanged),
            pending_settle=tuple(c.rel_path for c in waiting if c.problem is None),
            pending_retry=tuple(
                FileNote(
                    rel_path=c.rel_path,
                    outcome="pending-retry",
                    reason=c.problem,
                    retryable=True,
                )
                for c in waiting
                if c.problem is not None
            ),
            rejected=tuple(self.rejected),
            quarantined=tuple(self.quarantined),
            late=tuple(self.late),
            missing=tuple(self.missing),
            groups_completed=tuple(self.groups_completed),
            groups_expired=tuple(self.groups_expired),
            jobs_enqueued=tuple(self.jobs),
            rejections_resolved=self.rejections_resolved,
        )
