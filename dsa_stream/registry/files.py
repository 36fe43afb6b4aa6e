"""Input files and group assembly, database side (reliability §3.3, §3.4, §7.3).

The file watcher (or the reconcile scan) calls :func:`register_file` for every
settled, validated subband file. Each call is one transaction:

* the same path with the same content again is a no-op (``unchanged``);
* the same path with different content quarantines the registered row (``changed``:
  a file replaced under its name);
* a second file for a (group, subband) that already has one is recorded as
  ``quarantined`` with a reason, and the first stays (``conflict``, or
  ``duplicate`` when the content is identical);
* a subband out of range or a Dec far from the group's is ``rejected`` (quarantined);
* otherwise the file is ``registered``; when its group reaches ``n_subbands``
  distinct valid subbands while ``collecting``, the group becomes ``complete``
  and its ``convert`` job (dedupe ``convert:<group_key>``, order key = the
  group's observation time) is enqueued *in the same transaction*;
* a file for a group that already left ``collecting`` is kept but ``late``.

:func:`expire_incomplete_groups` applies the timeout policy to groups that stay
``collecting`` too long. Observation times come from the data (the caller parses
them from the header); bookkeeping times come from the store's clock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, Field
from sqlalchemy import Row, func, select, update

from dsa_stream.config import GroupingConfig
from dsa_stream.registry.db import insert, is_postgres
from dsa_stream.registry.jobstore import JobStore
from dsa_stream.registry.models import groups, input_files
from dsa_stream.registry.records import JobSpec, Record
from dsa_stream.registry.states import (
    VALID_FILE_STATES,
    FileState,
    GroupState,
    JobKind,
)
from dsa_stream.registry.txn import Txn, clip

logger = logging.getLogger(__name__)

_VALID = [str(s) for s in VALID_FILE_STATES]


class FileFacts(Record):
    """What the watcher knows about one settled, validated subband file."""

    root_id: str = Field(min_length=1, max_length=64)
    """Site root the path is relative to (e.g. ``incoming``)."""
    rel_path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    mtime_ns: int
    checksum: str | None = Field(None, max_length=64)
    """Content hash (xxh64 hex), if computed."""
    obs_time: AwareDatetime
    """Observation start from the file header (never the arrival time)."""
    subband: int = Field(ge=0)
    group_key: str = Field(min_length=1, max_length=64)
    dec_deg: float | None = None
    first_seen_at: AwareDatetime | None = None
    """When the watcher first saw the file (defaults to the registration time)."""


class RegisterOutcome(StrEnum):
    """What :func:`register_file` did (module docstring)."""

    REGISTERED = "registered"
    UNCHANGED = "unchanged"
    CHANGED = "changed"
    CONFLICT = "conflict"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    LATE = "late"


class RegisterResult(Record):
    """Outcome of one registration."""

    outcome: RegisterOutcome
    file_id: int
    group_id: int
    group_key: str
    group_state: GroupState
    n_present: int
    convert_job_id: int | None = None
    """Set when this registration completed the group and enqueued its convert job."""
    reason: str | None = None


class GroupExpiry(Record):
    """What the incomplete-group policy did to one group."""

    group_id: int
    group_key: str
    state: GroupState
    n_present: int
    missing_subbands: tuple[int, ...]
    convert_job_id: int | None


def convert_job(group_id: int, group_key: str, obs_time: datetime, missing: list[int]) -> JobSpec:
    """The first job of a group: convert its subbands to a Measurement Set."""
    return JobSpec(
        kind=JobKind.CONVERT,
        dedupe_key=f"convert:{group_key}",
        order_key=obs_time,
        group_id=group_id,
        payload={"group_key": group_key, "missing_subbands": missing},
    )


def _same_content(row: Row[Any], facts: FileFacts) -> bool:
    if row.size != facts.size:
        return False
    if row.checksum and facts.checksum:
        return bool(row.checksum == facts.checksum)
    return bool(row.mtime_ns == facts.mtime_ns)


def _group_for_update(txn: Txn, facts: FileFacts, grouping: GroupingConfig) -> Row[Any]:
    stmt = (
        insert(txn.conn, groups)
        .values(
            group_key=facts.group_key,
            obs_time=facts.obs_time,
            dec_deg=facts.dec_deg,
            n_present=0,
            n_expected=grouping.n_subbands,
            state=str(GroupState.COLLECTING),
            first_seen_at=facts.first_seen_at or txn.now,
            updated_at=txn.now,
        )
        .on_conflict_do_nothing(index_elements=["group_key"])
    )
    txn.conn.execute(stmt)
    return txn.conn.execute(
        select(groups).where(groups.c.group_key == facts.group_key).with_for_update()
    ).one()


def recount(txn: Txn, group_id: int) -> int:
    """Recount a group's distinct valid subbands (and, while collecting, its obs time)."""
    n, first = txn.conn.execute(
        select(
            func.count(input_files.c.subband.distinct()), func.min(input_files.c.obs_time)
        ).where(input_files.c.group_id == group_id, input_files.c.state.in_(_VALID))
    ).one()
    values: dict[str, Any] = {"n_present": n, "updated_at": txn.now}
    txn.conn.execute(update(groups).where(groups.c.id == group_id).values(values))
    if first is not None:
        txn.conn.execute(
            update(groups)
            .where(groups.c.id == group_id, groups.c.state == str(GroupState.COLLECTING))
            .values(obs_time=first)
        )
    return int(n)


def _insert_file(
    txn: Txn, facts: FileFacts, group_id: int, state: FileState, reason: str | None
) -> int:
    values = facts.model_dump(exclude={"group_key", "first_seen_at"})
    values.update(
        group_id=group_id,
        state=str(state),
        reason=clip(reason),
        first_seen_at=facts.first_seen_at or txn.now,
        registered_at=txn.now,
        updated_at=txn.now,
    )
    return int(
        txn.conn.execute(
            input_files.insert().values(**values).returning(input_files.c.id)
        ).scalar_one()
    )


def _set_file_state(txn: Txn, file_id: int, state: FileState, reason: str | None) -> None:
    txn.conn.execute(
        update(input_files)
        .where(input_files.c.id == file_id)
        .values(state=str(state), reason=clip(reason), updated_at=txn.now)
    )


def _invalid_reason(facts: FileFacts, group: Row[Any], grouping: GroupingConfig) -> str | None:
    if facts.subband >= grouping.n_subbands:
        return f"subband {facts.subband} out of range (0..{grouping.n_subbands - 1})"
    tol = grouping.dec_tolerance_deg
    if tol is None or facts.dec_deg is None or group.dec_deg is None:
        return None
    if abs(facts.dec_deg - group.dec_deg) > tol:
        return (
            f"Dec {facts.dec_deg:.4f} deg differs from the group's {group.dec_deg:.4f} deg "
            f"by more than {tol} deg"
        )
    return None


def _result(
    outcome: RegisterOutcome,
    file_id: int,
    group: Row[Any],
    txn: Txn,
    *,
    reason: str | None = None,
    convert_job_id: int | None = None,
) -> RegisterResult:
    row = txn.conn.execute(
        select(groups.c.state, groups.c.n_present).where(groups.c.id == group.id)
    ).one()
    if outcome in (RegisterOutcome.CHANGED, RegisterOutcome.CONFLICT, RegisterOutcome.REJECTED):
        logger.warning("file %s quarantined: %s", file_id, reason)
    return RegisterResult(
        outcome=outcome,
        file_id=file_id,
        group_id=group.id,
        group_key=group.group_key,
        group_state=GroupState(row.state),
        n_present=row.n_present,
        convert_job_id=convert_job_id,
        reason=reason,
    )


def _complete_if_full(txn: Txn, group: Row[Any], n_present: int) -> int | None:
    if group.state != GroupState.COLLECTING or n_present < group.n_expected:
        return None
    obs_time = txn.conn.execute(
        select(groups.c.obs_time).where(groups.c.id == group.id)
    ).scalar_one()
    txn.set_group_state(group.id, GroupState.COMPLETE, missing_subbands=[])
    job = txn.enqueue(convert_job(group.id, group.group_key, obs_time, []))
    logger.info("group %s complete: convert job %s", group.group_key, job.job_id)
    return job.job_id


def _register_known_path(
    txn: Txn, facts: FileFacts, row: Row[Any], grouping: GroupingConfig
) -> RegisterResult:
    group = txn.conn.execute(
        select(groups).where(groups.c.id == row.group_id).with_for_update()
    ).one()
    if not _same_content(row, facts):
        reason = (
            f"content changed after registration (size {row.size} -> {facts.size}, "
            f"mtime_ns {row.mtime_ns} -> {facts.mtime_ns})"
        )
        _set_file_state(txn, row.id, FileState.QUARANTINED, reason)
        recount(txn, group.id)
        return _result(RegisterOutcome.CHANGED, row.id, group, txn, reason=reason)
    if row.state != FileState.MISSING:
        return _result(RegisterOutcome.UNCHANGED, row.id, group, txn)
    holder = _valid_holder(txn, group.id, row.subband)
    if holder is not None:
        return _result(RegisterOutcome.UNCHANGED, row.id, group, txn)
    _set_file_state(txn, row.id, FileState.REGISTERED, "reappeared on disk")
    job_id = _complete_if_full(txn, group, recount(txn, group.id))
    return _result(RegisterOutcome.REGISTERED, row.id, group, txn, convert_job_id=job_id)


def _valid_holder(txn: Txn, group_id: int, subband: int) -> Row[Any] | None:
    return txn.conn.execute(
        select(input_files).where(
            input_files.c.group_id == group_id,
            input_files.c.subband == subband,
            input_files.c.state.in_(_VALID),
        )
    ).first()


def register_in(txn: Txn, facts: FileFacts, grouping: GroupingConfig) -> RegisterResult:
    """:func:`register_file` inside an open transaction."""
    known = txn.conn.execute(
        select(input_files).where(
            input_files.c.root_id == facts.root_id, input_files.c.rel_path == facts.rel_path
        )
    ).first()
    if known is not None:
        return _register_known_path(txn, facts, known, grouping)
    group = _group_for_update(txn, facts, grouping)
    invalid = _invalid_reason(facts, group, grouping)
    if invalid is not None:
        file_id = _insert_file(txn, facts, group.id, FileState.QUARANTINED, invalid)
        return _result(RegisterOutcome.REJECTED, file_id, group, txn, reason=invalid)
    holder = _valid_holder(txn, group.id, facts.subband)
    if holder is not None:
        same = _same_content(holder, facts)
        what = "identical copy" if same else "conflicting duplicate"
        reason = f"{what} of subband {facts.subband}: file {holder.id} ({holder.rel_path}) holds it"
        file_id = _insert_file(txn, facts, group.id, FileState.QUARANTINED, reason)
        outcome = RegisterOutcome.DUPLICATE if same else RegisterOutcome.CONFLICT
        return _result(outcome, file_id, group, txn, reason=reason)
    file_id = _insert_file(txn, facts, group.id, FileState.REGISTERED, None)
    n_present = recount(txn, group.id)
    if group.dec_deg is None and facts.dec_deg is not None:
        txn.conn.execute(
            update(groups).where(groups.c.id == group.id).values(dec_deg=facts.dec_deg)
        )
    if group.state != GroupState.COLLECTING:
        return _result(RegisterOutcome.LATE, file_id, group, txn, reason=f"group is {group.state}")
    job_id = _complete_if_full(txn, group, n_present)
    return _result(RegisterOutcome.REGISTERED, file_id, group, txn, convert_job_id=job_id)


def register_file(
    store: JobStore, facts: FileFacts, grouping: GroupingConfig | None = None
) -> RegisterResult:
    """Record one input file idempotently and assemble its group (module docstring)."""
    with store.transaction() as txn:
        return register_in(txn, facts, grouping or GroupingConfig())


def _expire_one(
    txn: Txn, group: Row[Any], policy: str, min_subbands: int, n_subbands: int
) -> GroupExpiry:
    present = {
        int(s)
        for s in txn.conn.execute(
            select(input_files.c.subband).where(
                input_files.c.group_id == group.id, input_files.c.state.in_(_VALID)
            )
        ).scalars()
    }
    missing = sorted(set(range(n_subbands)) - present)
    job_id = None
    if policy == "process" and len(present) >= min_subbands:
        txn.set_group_state(
            group.id,
            GroupState.INCOMPLETE,
            reason=f"timed out with {len(present)}/{n_subbands} subbands; processing",
            missing_subbands=missing,
        )
        job_id = txn.enqueue(convert_job(group.id, group.group_key, group.obs_time, missing)).job_id
        state = GroupState.INCOMPLETE
    else:
        txn.set_group_state(
            group.id,
            GroupState.QUARANTINED,
            reason=f"timed out with {len(present)}/{n_subbands} subbands (policy {policy}, "
            f"min {min_subbands})",
            missing_subbands=missing,
        )
        state = GroupState.QUARANTINED
    logger.warning("group %s timed out -> %s (missing %s)", group.group_key, state, missing)
    return GroupExpiry(
        group_id=group.id,
        group_key=group.group_key,
        state=state,
        n_present=len(present),
        missing_subbands=tuple(missing),
        convert_job_id=job_id,
    )


def expire_incomplete_groups(
    store: JobStore,
    grouping: GroupingConfig | None = None,
    *,
    now: datetime | None = None,
    timeout_s: float | None = None,
    policy: Literal["process", "quarantine"] | None = None,
    min_subbands: int | None = None,
    limit: int = 100,
) -> list[GroupExpiry]:
    """Apply the incomplete-group policy to groups collecting for longer than the timeout.

    Groups whose first file was seen more than ``timeout_s`` before ``now`` (default:
    the store's clock) become ``incomplete`` with their convert job enqueued and the
    missing subbands recorded when the policy is ``process`` and they hold at least
    ``min_subbands``; otherwise ``quarantined`` with the missing subbands recorded.
    Unset arguments come from ``grouping`` (default :class:`GroupingConfig`).
    """
    cfg = grouping or GroupingConfig()
    timeout = cfg.complete_timeout_s if timeout_s is None else timeout_s
    with store.transaction() as txn:
        cutoff = (now or txn.now) - timedelta(seconds=timeout)
        query = (
            select(groups.c.id, groups.c.group_key, groups.c.obs_time, groups.c.n_expected)
            .where(groups.c.state == str(GroupState.COLLECTING), groups.c.first_seen_at <= cutoff)
            .order_by(groups.c.obs_time)
            .limit(limit)
        )
        if is_postgres(txn.conn):
            query = query.with_for_update(skip_locked=True)
        return [
            _expire_one(
                txn,
                group,
                policy or cfg.incomplete_policy,
                cfg.min_subbands if min_subbands is None else min_subbands,
                group.n_expected,
            )
            for group in txn.conn.execute(query).all()
        ]


def quarantine_file(store: JobStore, file_id: int, reason: str) -> bool:
    """Set a file aside with a reason; its group is recounted. Returns False if unknown."""
    with store.transaction() as txn:
        group_id = txn.conn.execute(
            select(input_files.c.group_id).where(input_files.c.id == file_id)
        ).scalar_one_or_none()
        if group_id is None:
            return False
        _set_file_state(txn, file_id, FileState.QUARANTINED, reason)
        recount(txn, group_id)
        logger.warning("file %s quarantined: %s", file_id, reason)
        return True


def mark_file_missing(
    store: JobStore, root_id: str, rel_path: str, reason: str = "not found on disk"
) -> bool:
    """Mark a registered file missing (reconcile found it gone); returns False if unknown."""
    with store.transaction() as txn:
        row = txn.conn.execute(
            select(input_files.c.id, input_files.c.group_id).where(
                input_files.c.root_id == root_id,
                input_files.c.rel_path == rel_path,
                input_files.c.state.in_(_VALID),
            )
        ).first()
        if row is None:
            return False
        _set_file_state(txn, row.id, FileState.MISSING, reason)
        recount(txn, row.group_id)
        return True


def mark_group_files_consumed(txn: Txn, group_id: int) -> int:
    """Mark a group's registered files ``consumed`` (call in the convert completion)."""
    result = txn.conn.execute(
        update(input_files)
        .where(input_files.c.group_id == group_id, input_files.c.state == str(FileState.REGISTERED))
        .values(state=str(FileState.CONSUMED), updated_at=txn.now)
    )
    return int(result.rowcount)
