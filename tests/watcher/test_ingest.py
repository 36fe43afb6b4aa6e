"""The ingestor without events (one pass at a time, or step by step), on SQLite and PostgreSQL.

Bad inputs (T15), duplicates and out-of-order arrival (T16), jitter and name checks,
exactly-once group completion, the incomplete-group timeout both ways, missing files.
The clock is the wall clock plus an offset: "ten minutes later" takes no time.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import h5py
import pytest
import xxhash
from sqlalchemy.exc import OperationalError

from dsa_stream import naming
from dsa_stream.watcher import ingest as ingest_mod
from dsa_stream.watcher import registrar as registrar_mod
from dsa_stream.watcher.ingest import Ingestor, ingest_once
from dsa_stream.watcher.report import IngestReport

from .conftest import Library, Site

ALL = range(16)


def ingest(site: Site) -> IngestReport:
    return ingest_once(site.settings, store=site.store, clock=site.clock)


def deliver(site: Site, lib: Library, group: int, subbands: Any = ALL) -> list[Path]:
    return [site.put(lib.path(group, sb)) for sb in subbands]


def convert_jobs(site: Site) -> list[Any]:
    return site.query(
        "SELECT j.id, j.dedupe_key, j.order_key, g.group_key, j.payload FROM jobs j "
        "JOIN groups g ON g.id = j.group_id WHERE j.kind = 'convert' ORDER BY j.order_key"
    )


def group_rows(site: Site) -> dict[str, Any]:
    rows = site.query("SELECT group_key, state, n_present, missing_subbands FROM groups")
    return {r.group_key: r for r in rows}


def rejections(site: Site) -> dict[str, Any]:
    rows = site.query("SELECT rel_path, state, reason, retryable FROM rejected_files")
    return {r.rel_path: r for r in rows}


def flip_bit(path: Path, offset: int, bit: int = 6) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def dataset_offset(path: Path, name: str) -> int:
    with h5py.File(path, "r") as h5:
        offset = h5[name].id.get_offset()
    assert offset is not None
    return int(offset)


def zero_last_integration(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        nbls = int(h5["Header/Nbls"][()])
        vis = h5["Data/visdata"]
        vis[vis.shape[0] - nbls :] = 0


# -- the normal case, idempotence, ordering ------------------------------------------------


def test_backlog_registers_every_group_exactly_once(site: Callable[..., Site], library: Library):
    s = site()
    files = [library.path(g, sb) for g in range(3) for sb in ALL]
    random.Random(3).shuffle(files)
    for f in files:
        s.put(f)
    s.clock.advance(1)  # older than settle_s
    report = ingest(s)
    assert report.files_seen == 48 and report.registered == 48
    assert not (report.rejected or report.quarantined or report.pending_retry)
    assert [g.group_key for g in report.groups_completed] == sorted(library.keys)
    jobs = convert_jobs(s)
    assert [j.group_key for j in jobs] == library.keys and len(report.jobs_enqueued) == 3
    assert sorted(j.id for j in jobs) == sorted(report.jobs_enqueued)
    assert {j.dedupe_key for j in jobs} == {f"convert:{k}" for k in library.keys}
    groups = group_rows(s)
    assert all(groups[k].state == "complete" and groups[k].n_present == 16 for k in library.keys)
    # jittered names of one observation share the group of the header time
    files_by_group = s.query(
        "SELECT g.group_key, f.rel_path FROM input_files f JOIN groups g ON g.id = f.group_id"
    )
    for key, rel_path in files_by_group:
        stamp = naming.parse_subband_filename(rel_path).timestamp
        assert 0 <= (stamp - naming.parse_group_key(key)).total_seconds() <= 5
    assert len({r for _, r in files_by_group}) == 48
    # a second pass reads nothing again and changes nothing
    again = ingest(s)
    assert again.unchanged == 48 and again.registered == 0
    assert not (again.groups_completed or again.jobs_enqueued or again.pending_settle)
    assert len(convert_jobs(s)) == 3


def test_out_of_order_arrival(site: Callable[..., Site], library: Library) -> None:
    """Group k+1 before group k, subbands shuffled, over several passes."""
    s = site()
    order = list(ALL)
    random.Random(7).shuffle(order)
    deliver(s, library, 1)
    deliver(s, library, 0, order[:9])
    s.clock.advance(1)
    first = ingest(s)
    assert [g.group_key for g in first.groups_completed] == [library.keys[1]]
    assert group_rows(s)[library.keys[0]].n_present == 9
    deliver(s, library, 0, order[9:])
    s.clock.advance(1)
    second = ingest(s)
    assert [g.group_key for g in second.groups_completed] == [library.keys[0]]
    assert [j.group_key for j in convert_jobs(s)] == library.keys[:2]  # obs-time order


def test_files_younger_than_settle_wait(site: Callable[..., Site], library: Library) -> None:
    s = site(settle_s=30)
    deliver(s, library, 0, [0, 1])
    report = ingest(s)
    assert report.registered == 0 and len(report.pending_settle) == 2
    s.clock.advance(31)
    assert ingest(s).registered == 2


# -- bad inputs (T15) ---------------------------------------------------------------------


def test_corrupt_truncated_and_unfinished_files_are_retried_then_rejected(
    site: Callable[..., Site], library: Library
) -> None:
    s = site(validation_grace_s=60, grouping={"min_subbands": 12})
    good = deliver(s, library, 0, [sb for sb in ALL if sb not in (2, 4, 6, 8, 10)])
    bad = {sb: s.put(library.path(0, sb)) for sb in (2, 4, 6, 8, 10)}
    data = bad[2].read_bytes()
    bad[2].write_bytes(data[: random.Random(2).randrange(1, len(data))])  # truncated
    bad[4].write_bytes(random.Random(4).randbytes(len(data)))  # garbage
    zero_last_integration(bad[6])  # pre-allocated, tail not written
    flip_bit(bad[8], 0)  # bit flip in the superblock signature
    flip_bit(bad[10], dataset_offset(bad[10], "Header/freq_array") + 6, 4)  # header value
    deliver(s, library, 1)  # another group, unaffected
    s.clock.advance(1)
    first = ingest(s)
    assert first.registered == len(good) + 16
    assert [g.group_key for g in first.groups_completed] == [library.keys[1]]
    waiting = {n.rel_path: n.reason for n in first.pending_retry}
    assert set(waiting) == {bad[sb].name for sb in (2, 4, 6, 8)}
    assert "cannot open as HDF5" in waiting[bad[2].name]
    assert "only zeros" in waiting[bad[6].name]
    (flipped,) = first.rejected  # a header value that contradicts the name: at once
    assert flipped.rel_path == bad[10].name and flipped.retryable is False
    assert "name says sb10" in (flipped.reason or "") or "freq_array" in (flipped.reason or "")
    s.clock.advance(61)  # past the grace period since the files last changed
    second = ingest(s)
    assert {n.rel_path for n in second.rejected} == {bad[sb].name for sb in (2, 4, 6, 8)}
    assert all(n.retryable and "still invalid 60 s" in (n.reason or "") for n in second.rejected)
    assert not second.pending_retry
    recorded = rejections(s)
    assert set(recorded) == {p.name for p in bad.values()}
    assert all(r.state == "rejected" and r.reason for r in recorded.values())
    # never silently skipped: every file on disk is registered or rejected
    registered = {r.rel_path for r in s.query("SELECT rel_path FROM input_files")}
    assert registered | set(recorded) == {p.name for p in s.incoming.iterdir()}
    assert ingest(s).unchanged == 32  # rejected versions are not read again
    s.clock.advance(600)  # the group times out with 11 subbands (< min 12): quarantined
    third = ingest(s)
    (expired,) = third.groups_expired
    assert expired.group_key == library.keys[0] and expired.state == "quarantined"
    assert expired.missing_subbands == (2, 4, 6, 8, 10)
    assert group_rows(s)[library.keys[1]].state == "complete"


def test_a_rejected_file_that_is_finished_later_registers_and_resolves(
    site: Callable[..., Site], library: Library
) -> None:
    s = site(validation_grace_s=5)
    deliver(s, library, 0, range(15))
    unfinished = s.put(library.path(0, 15))
    zero_last_integration(unfinished)
    s.clock.advance(6)
    first = ingest(s)
    assert [n.rel_path for n in first.rejected] == [unfinished.name]
    shutil.copyfile(library.path(0, 15), unfinished)  # the writer finishes the file
    s.clock.advance(1)
    second = ingest(s)
    assert second.registered == 1 and second.rejections_resolved == 1
    assert [g.group_key for g in second.groups_completed] == [library.keys[0]]
    assert rejections(s)[unfinished.name].state == "resolved"


def test_an_old_truncated_file_is_rejected_at_once_after_a_restart(
    site: Callable[..., Site], library: Library
) -> None:
    """The grace period runs from the file's last change on disk, not from first sight."""
    s = site(validation_grace_s=60)
    path = s.put(library.path(0, 0))
    path.write_bytes(path.read_bytes()[:5000])
    s.clock.advance(3600)
    (rejected,) = ingest(s).rejected
    assert rejected.retryable and "truncated" in (rejected.reason or "")


# -- names, duplicates, conflicts (T16) ------------------------------------------------------


def test_names_are_checked_against_the_header(site: Callable[..., Site], library: Library):
    s = site()
    src = library.path(0, 5)
    stamp = naming.parse_subband_filename(src.name).timestamp
    far = naming.format_subband_filename(naming.SubbandName(stamp + timedelta(seconds=120), 5))
    near = naming.format_subband_filename(naming.SubbandName(stamp + timedelta(seconds=30), 5))
    wrong_sb = naming.format_subband_filename(naming.SubbandName(stamp, 3))
    s.put(src, far)
    s.put(src, near)
    s.put(src, wrong_sb)
    s.put(src, "garbage.hdf5")
    s.put(src, "." + src.name + ".Ab12Cd")  # rsync's temporary name: ignored
    s.put(src, src.name + ".part")
    (s.incoming / "notes.txt").write_text("not data")
    (s.incoming / os.fsdecode(b"\xff_sb03.hdf5")).write_bytes(b"x")  # not UTF-8: logged
    s.clock.advance(1)
    report = ingest(s)
    assert report.registered == 1 and report.ignored == 4
    reasons = {n.rel_path: n.reason or "" for n in report.rejected}
    assert set(reasons) == {far, wrong_sb, "garbage.hdf5"}
    assert "tolerance 60 s" in reasons[far]
    assert "name says sb03" in reasons[wrong_sb]
    assert "not a DSA-110 subband file name" in reasons["garbage.hdf5"]
    assert all(n.retryable is False for n in report.rejected)
    (row,) = s.query("SELECT g.group_key FROM input_files f JOIN groups g ON g.id = f.group_id")
    assert row.group_key == library.keys[0]  # the jittered (+30 s) name: same group


def test_duplicates_and_conflicts(
    site: Callable[..., Site], library: Library, alt_library: Library
) -> None:
    s = site()
    deliver(s, library, 0)
    s.clock.advance(1)
    assert len(ingest(s).groups_completed) == 1
    s.put(library.path(0, 3))  # the same delivery again (new mtime, same bytes)
    stamp = naming.parse_subband_filename(library.path(0, 4).name).timestamp
    copy_name = naming.format_subband_filename(naming.SubbandName(stamp + timedelta(seconds=9), 4))
    s.put(library.path(0, 4), copy_name)  # identical content under another name
    s.put(alt_library.path(0, 7))  # same observation and subband, other content
    replaced = s.put(alt_library.path(0, 8), library.path(0, 8).name)  # rewritten in place
    s.clock.advance(1)
    report = ingest(s)
    assert report.registered == 0 and report.unchanged == 15  # 14 untouched + sb03 again
    outcomes = {n.rel_path: (n.outcome, n.reason or "") for n in report.quarantined}
    assert outcomes[copy_name][0] == "duplicate" and "identical copy" in outcomes[copy_name][1]
    alt = alt_library.path(0, 7).name
    assert alt != library.path(0, 7).name
    assert outcomes[alt][0] == "conflict" and "conflicting duplicate" in outcomes[alt][1]
    assert (
        outcomes[replaced.name][0] == "changed" and "content changed" in outcomes[replaced.name][1]
    )
    assert len(convert_jobs(s)) == 1 and not report.groups_completed
    states = dict(s.query("SELECT rel_path, state FROM input_files"))
    assert states[copy_name] == "quarantined" and states[library.path(0, 3).name] == "registered"
    assert states[alt] == "quarantined" and states[replaced.name] == "quarantined"
    again = ingest(s)  # a new ingestor: nothing is read again, nothing reported again
    assert again.unchanged == 18 and not again.quarantined


# -- incomplete groups -------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["process", "quarantine"])
def test_incomplete_group_timeout_policy(
    site: Callable[..., Site], library: Library, policy: str
) -> None:
    s = site(grouping={"incomplete_policy": policy, "min_subbands": 12, "complete_timeout_s": 300})
    deliver(s, library, 0, range(13))
    s.clock.advance(1)
    assert ingest(s).registered == 13
    s.clock.advance(200)
    assert not ingest(s).groups_expired
    s.clock.advance(101)
    (expired,) = ingest(s).groups_expired
    assert expired.missing_subbands == (13, 14, 15)
    jobs = convert_jobs(s)
    if policy == "process":
        assert expired.state == "incomplete" and expired.convert_job_id == jobs[0].id
        assert len(jobs) == 1
    else:
        assert expired.state == "quarantined" and expired.convert_job_id is None and not jobs
    deliver(s, library, 0, [13, 14, 15])  # the stragglers arrive after the timeout
    s.clock.advance(1)
    late = ingest(s)
    assert {n.rel_path for n in late.late} == {library.path(0, sb).name for sb in (13, 14, 15)}
    assert not late.groups_completed and len(convert_jobs(s)) == len(jobs)


# -- reconcile against the disk -------------------------------------------------------------------


def test_missing_and_removed_files(site: Callable[..., Site], library: Library) -> None:
    s = site()
    kept = s.put(library.path(0, 0))
    bad = s.put(library.path(0, 1), "garbage.hdf5")
    s.clock.advance(1)
    ingest(s)
    moved_away = kept.with_suffix(".moved")
    kept.rename(moved_away)
    bad.unlink()
    report = ingest(s)
    assert report.missing == (kept.name,) and report.rejections_resolved == 1
    assert rejections(s)["garbage.hdf5"].state == "removed"
    moved_away.rename(kept)  # back (same bytes, same mtime): registered again
    again = ingest(s)
    assert again.registered == 1
    assert dict(s.query("SELECT rel_path, state FROM input_files"))[kept.name] == "registered"


# -- step by step ---------------------------------------------------------------------------


def test_a_file_written_in_appends_is_registered_only_when_complete(
    site: Callable[..., Site], library: Library
) -> None:
    s = site(use_observer=False, settle_s=0.2, reconcile_interval_s=0.25)
    data = library.path(0, 12).read_bytes()
    dest = s.incoming / library.path(0, 12).name
    cuts = [len(data) * k // 5 for k in range(1, 5)] + [len(data)]
    with Ingestor(s.settings, store=s.store, clock=s.clock) as ing:
        ing.start()
        written = 0
        for cut in cuts:
            with open(dest, "ab") as fh:
                fh.write(data[written:cut])
            written = cut
            for _ in range(3):  # the file sits still long enough to be inspected
                s.clock.advance(0.3)
                ing.step()
            if cut < len(data):
                assert s.query("SELECT id FROM input_files") == []
                cand = ing.tracker.get(dest.name)
                assert cand is not None and cand.problem, cand
        assert ing.stats()["registered"] == 1 and ing.stats()["retries"] >= 4
    (row,) = s.query("SELECT size, checksum FROM input_files")
    assert row.size == len(data) and row.checksum == xxhash.xxh64(data).hexdigest()
    assert rejections(s) == {}


def test_registry_errors_are_retried_not_fatal(
    site: Callable[..., Site], library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = site(use_observer=False)
    s.put(library.path(0, 0))
    real = registrar_mod.register_resolving
    calls = []

    def flaky(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*args, **kw)

    monkeypatch.setattr(registrar_mod, "register_resolving", flaky)
    with Ingestor(s.settings, store=s.store, clock=s.clock) as ing:
        ing.start()
        s.clock.advance(1)
        ing.step()
        assert ing.stats()["db_errors"] == 1 and ing.stats()["registered"] == 0
        s.clock.advance(ingest_mod.DB_RETRY_S + 0.1)
        ing.step()
        assert ing.stats()["registered"] == 1
    with pytest.raises(OperationalError):  # one pass (--once) reports the failure
        calls.clear()
        s.put(library.path(0, 1))
        s.clock.advance(1)
        ingest(s)


def test_a_registry_failure_during_a_scan_is_retried(
    site: Callable[..., Site], library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = site(use_observer=False)
    real = registrar_mod.known_paths
    failures = [1]

    def flaky(*args: Any, **kw: Any) -> Any:
        if failures:
            failures.pop()
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        return real(*args, **kw)

    with Ingestor(s.settings, store=s.store, clock=s.clock) as ing:
        ing.start()
        s.put(library.path(0, 0))
        s.clock.advance(2)
        monkeypatch.setattr(registrar_mod, "known_paths", flaky)
        assert ing.step() == ingest_mod.DB_RETRY_S
        assert ing.stats()["db_errors"] == 1
        assert ing.step() > 0 and ing.stats()["registered"] == 0  # backing off
        s.clock.advance(ingest_mod.DB_RETRY_S)
        ing.step()
        assert ing.stats()["registered"] == 1
