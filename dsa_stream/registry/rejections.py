"""Files that never became valid subband files, recorded with the reason (never skipped).

A corrupt, truncated or misnamed file has no group and no observation time, so
it cannot be an ``input_files`` row. The watcher records it here instead
(table ``rejected_files``, migration 0002). The file stays where it is: the
registry is the record, nothing is renamed in the watched directory.

* One row per version of a path, ``(root_id, rel_path, size, mtime_ns)``:
  recording the same version again is a no-op (``created=False``).
* At most one open (``rejected``) row per path: a newer invalid version
  supersedes the older row (``superseded``).
* A later valid version of the path registers normally; :func:`register_resolving`
  resolves the open rejection in the same transaction (``resolved``, with the
  ``input_files`` row it became).
* A rejected file deleted from disk is closed as ``removed`` by the reconcile scan.
* Rejecting a new version of a path whose older version is a registered input
  file quarantines that row: the registered content is no longer on disk.
* A *valid* file replacing a registered one with other content (registry outcome
  ``changed``: the registered row is quarantined, the new content gets no row) is
  recorded here too, so the record says why that version is not used and scans
  do not read it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from typing import NamedTuple

from pydantic import AwareDatetime, Field
from sqlalchemy import Connection, select, update

from dsa_stream.config import GroupingConfig
from dsa_stream.registry.files import (
    FileFacts,
    RegisterOutcome,
    RegisterResult,
    recount,
    register_in,
)
from dsa_stream.registry.jobstore import JobStore
from dsa_stream.registry.models import input_files, rejected_files
from dsa_stream.registry.records import Record
from dsa_stream.registry.states import VALID_FILE_STATES, FileState
from dsa_stream.registry.txn import Txn, clip

logger = logging.getLogger(__name__)

#: Paths per ``IN (...)`` lookup.
LOOKUP_CHUNK = 500
_VALID = [str(s) for s in VALID_FILE_STATES]


class RejectionState(StrEnum):
    """State of a ``rejected_files`` row (the migration spells the same values out)."""

    REJECTED = "rejected"
    """Open: the file on disk is this version and it is not valid."""
    RESOLVED = "resolved"
    """A later valid version of the path was registered."""
    SUPERSEDED = "superseded"
    """A later version of the path was rejected too (that row is the open one)."""
    REMOVED = "removed"
    """The file is no longer on disk."""


class RejectionFacts(Record):
    """What the watcher knows about one file version it gives up on."""

    root_id: str = Field(min_length=1, max_length=64)
    rel_path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    mtime_ns: int
    checksum: str | None = Field(None, max_length=64)
    reason: str = Field(min_length=1)
    retryable: bool
    """The problem was of the kind that waiting can fix, and the grace period ran out."""
    attempts: int = Field(1, ge=1)
    """Inspections of this version."""
    first_seen_at: AwareDatetime | None = None
    """When the watcher first saw the path (defaults to the rejection time)."""


class RejectionResult(Record):
    """Outcome of :func:`record_rejection`."""

    rejection_id: int
    created: bool
    """False when this version was already recorded as rejected (nothing changed)."""
    superseded: tuple[int, ...] = ()
    """Older open rejections of the path, now ``superseded``."""
    quarantined_file_id: int | None = None
    """A registered input file of the path whose content was replaced by this version."""


class KnownVersion(NamedTuple):
    """A version of a path the registry already holds."""

    size: int
    mtime_ns: int
    state: str
    """``input_files`` state, or ``rejected`` for an open rejection."""


class KnownPath(NamedTuple):
    """What the registry knows about one path."""

    input_file: KnownVersion | None
    rejection: KnownVersion | None

    def holds(self, size: int, mtime_ns: int) -> bool:
        """True when this exact version is already recorded (registered or rejected).

        A registered file marked ``missing`` that is back on disk is not "held":
        registering it again restores it.
        """
        for version in (self.input_file, self.rejection):
            if version is None or (version.size, version.mtime_ns) != (size, mtime_ns):
                continue
            if version.state != FileState.MISSING:
                return True
        return False


def _close_open(
    txn: Txn,
    root_id: str,
    rel_path: str,
    state: RejectionState,
    resolution: str,
    file_id: int | None = None,
) -> tuple[int, ...]:
    rows = txn.conn.execute(
        update(rejected_files)
        .where(
            rejected_files.c.root_id == root_id,
            rejected_files.c.rel_path == rel_path,
            rejected_files.c.state == str(RejectionState.REJECTED),
        )
        .values(
            state=str(state),
            resolution=clip(resolution),
            resolved_file_id=file_id,
            resolved_at=txn.now,
            updated_at=txn.now,
        )
        .returning(rejected_files.c.id)
    ).all()
    return tuple(int(r.id) for r in rows)


def _quarantine_replaced(txn: Txn, facts: RejectionFacts) -> int | None:
    row = txn.conn.execute(
        select(input_files.c.id, input_files.c.group_id, input_files.c.size, input_files.c.mtime_ns)
        .where(
            input_files.c.root_id == facts.root_id,
            input_files.c.rel_path == facts.rel_path,
            input_files.c.state.in_(_VALID),
        )
        .with_for_update()
    ).first()
    if row is None or (row.size, row.mtime_ns) == (facts.size, facts.mtime_ns):
        return None
    reason = f"replaced on disk by a version that was rejected: {facts.reason}"
    txn.conn.execute(
        update(input_files)
        .where(input_files.c.id == row.id)
        .values(state=str(FileState.QUARANTINED), reason=clip(reason), updated_at=txn.now)
    )
    recount(txn, row.group_id)
    logger.warning("file %s quarantined: %s", row.id, reason)
    return int(row.id)


def reject_in(txn: Txn, facts: RejectionFacts) -> RejectionResult:
    """:func:`record_rejection` inside an open transaction."""
    same = txn.conn.execute(
        select(rejected_files.c.id, rejected_files.c.state).where(
            rejected_files.c.root_id == facts.root_id,
            rejected_files.c.rel_path == facts.rel_path,
            rejected_files.c.size == facts.size,
            rejected_files.c.mtime_ns == facts.mtime_ns,
        )
    ).first()
    if same is not None and same.state == RejectionState.REJECTED:
        return RejectionResult(rejection_id=same.id, created=False)
    superseded = _close_open(
        txn,
        facts.root_id,
        facts.rel_path,
        RejectionState.SUPERSEDED,
        f"a newer version (size {facts.size}, mtime_ns {facts.mtime_ns}) was rejected too",
    )
    quarantined = _quarantine_replaced(txn, facts)
    values = {
        "checksum": facts.checksum,
        "reason": clip(facts.reason),
        "retryable": facts.retryable,
        "attempts": facts.attempts,
        "state": str(RejectionState.REJECTED),
        "resolution": None,
        "resolved_file_id": None,
        "rejected_at": txn.now,
        "updated_at": txn.now,
        "resolved_at": None,
    }
    if same is not None:  # the same version again after it was closed: reopen it
        txn.conn.execute(
            update(rejected_files).where(rejected_files.c.id == same.id).values(values)
        )
        rejection_id = int(same.id)
    else:
        values.update(
            root_id=facts.root_id,
            rel_path=facts.rel_path,
            size=facts.size,
            mtime_ns=facts.mtime_ns,
            first_seen_at=facts.first_seen_at or txn.now,
        )
        rejection_id = int(
            txn.conn.execute(
                rejected_files.insert().values(values).returning(rejected_files.c.id)
            ).scalar_one()
        )
    logger.warning("rejected %s:%s: %s", facts.root_id, facts.rel_path, facts.reason)
    return RejectionResult(
        rejection_id=rejection_id,
        created=True,
        superseded=superseded,
        quarantined_file_id=quarantined,
    )


def record_rejection(store: JobStore, facts: RejectionFacts) -> RejectionResult:
    """Record that one version of a file is not a valid subband file (module docstring)."""
    with store.transaction() as txn:
        return reject_in(txn, facts)


def _refresh_mtime(txn: Txn, result: RegisterResult, facts: FileFacts) -> None:
    """Record the new mtime of identical bytes delivered again (same checksum).

    The next scan then recognises the file without reading it.
    """
    if facts.checksum is None:
        return
    txn.conn.execute(
        update(input_files)
        .where(
            input_files.c.id == result.file_id,
            input_files.c.rel_path == facts.rel_path,
            input_files.c.size == facts.size,
            input_files.c.checksum == facts.checksum,
            input_files.c.mtime_ns != facts.mtime_ns,
        )
        .values(mtime_ns=facts.mtime_ns, updated_at=txn.now)
    )


def register_resolving(
    store: JobStore, facts: FileFacts, grouping: GroupingConfig | None = None
) -> tuple[RegisterResult, tuple[int, ...]]:
    """:func:`~dsa_stream.registry.files.register_file` that keeps ``rejected_files`` right.

    In the same transaction:

    * the path's open rejection (an older, invalid version) is resolved, pointing
      at the ``input_files`` row the registry kept;
    * a valid file whose path was registered with other content (outcome
      ``changed``: the registry quarantines the registered row and keeps no row for
      the new content) is recorded as a rejected version, so that it is not read
      again at every scan;
    * identical bytes delivered again (``unchanged`` by checksum) update the row's
      ``mtime_ns``.

    Returns:
        The registration result and the ids of the rejections it resolved.
    """
    with store.transaction() as txn:
        result = register_in(txn, facts, grouping or GroupingConfig())
        if result.outcome == RegisterOutcome.CHANGED:
            reject_in(
                txn,
                RejectionFacts(
                    root_id=facts.root_id,
                    rel_path=facts.rel_path,
                    size=facts.size,
                    mtime_ns=facts.mtime_ns,
                    checksum=facts.checksum,
                    reason=f"valid file replacing registered file {result.file_id} with other "
                    f"content ({result.reason}); both set aside",
                    retryable=False,
                    first_seen_at=facts.first_seen_at,
                ),
            )
            return result, ()
        if result.outcome == RegisterOutcome.UNCHANGED:
            _refresh_mtime(txn, result, facts)
        resolved = _close_open(
            txn,
            facts.root_id,
            facts.rel_path,
            RejectionState.RESOLVED,
            f"a valid version was registered ({result.outcome}, file {result.file_id})",
            file_id=result.file_id,
        )
    return result, resolved


def close_rejection(
    store: JobStore,
    root_id: str,
    rel_path: str,
    *,
    state: RejectionState = RejectionState.REMOVED,
    resolution: str = "the file is no longer on disk",
) -> tuple[int, ...]:
    """Close the open rejection of a path (default: the file was removed); returns the ids."""
    with store.transaction() as txn:
        return _close_open(txn, root_id, rel_path, state, resolution)


def _chunks(items: Sequence[str], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def known_paths(conn: Connection, root_id: str, rel_paths: Iterable[str]) -> dict[str, KnownPath]:
    """What the registry holds for each of ``rel_paths`` (paths it does not know are absent)."""
    paths = sorted(set(rel_paths))
    files: dict[str, KnownVersion] = {}
    rejections: dict[str, KnownVersion] = {}
    for chunk in _chunks(paths):
        for r in conn.execute(
            select(
                input_files.c.rel_path,
                input_files.c.size,
                input_files.c.mtime_ns,
                input_files.c.state,
            ).where(input_files.c.root_id == root_id, input_files.c.rel_path.in_(chunk))
        ):
            files[r.rel_path] = KnownVersion(r.size, r.mtime_ns, r.state)
        for r in conn.execute(
            select(
                rejected_files.c.rel_path, rejected_files.c.size, rejected_files.c.mtime_ns
            ).where(
                rejected_files.c.root_id == root_id,
                rejected_files.c.rel_path.in_(chunk),
                rejected_files.c.state == str(RejectionState.REJECTED),
            )
        ):
            rejections[r.rel_path] = KnownVersion(r.size, r.mtime_ns, str(RejectionState.REJECTED))
    return {
        p: KnownPath(files.get(p), rejections.get(p))
        for p in paths
        if p in files or p in rejections
    }


def open_rejection_paths(conn: Connection, root_id: str) -> set[str]:
    """Paths under ``root_id`` with an open rejection."""
    return set(
        conn.execute(
            select(rejected_files.c.rel_path).where(
                rejected_files.c.root_id == root_id,
                rejected_files.c.state == str(RejectionState.REJECTED),
            )
        ).scalars()
    )


def registered_paths(conn: Connection, root_id: str) -> set[str]:
    """Paths under ``root_id`` of files registered and not yet consumed."""
    return set(
        conn.execute(
            select(input_files.c.rel_path).where(
                input_files.c.root_id == root_id,
                input_files.c.state == str(FileState.REGISTERED),
            )
        ).scalars()
    )
