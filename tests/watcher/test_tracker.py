"""Name classes, the settle rule, retry backoff and the grace period (no I/O, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dsa_stream.config import WatcherConfig
from dsa_stream.watcher.scan import FileStat, NameKind, classify_name, scan_directory
from dsa_stream.watcher.tracker import Tracker

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NAME = "2025-10-02T00:00:00_sb03.hdf5"


def ns(t: datetime) -> int:
    return int(t.timestamp() * 1e9)


def stat(size: int, changed: datetime, ino: int = 7) -> FileStat:
    return FileStat(size, ns(changed), ns(changed), ino)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        (NAME, NameKind.SUBBAND),
        ("2025-10-02T00:00:00_sb15.hdf5", NameKind.SUBBAND),
        ("." + NAME + ".Xa81Qz", NameKind.TEMPORARY),  # rsync
        ("." + NAME + ".tmp", NameKind.TEMPORARY),  # the simulator's rename mode
        (NAME + ".part", NameKind.TEMPORARY),
        ("2025-10-02T00:00:00_sb03_incomplete.hdf5", NameKind.TEMPORARY),
        ("2025-10-02T00:00:00_sb3.hdf5", NameKind.MISNAMED),
        ("2025-13-02T00:00:00_sb03.hdf5", NameKind.MISNAMED),
        ("garbage.H5", NameKind.MISNAMED),
        ("x.uvh5", NameKind.MISNAMED),
        ("truth.json", NameKind.OTHER),
        ("README", NameKind.OTHER),
        ("2025-10-02T00:00:00_sb03\udcff.hdf5", NameKind.UNDECODABLE),
    ],
)
def test_name_classes(name: str, kind: NameKind) -> None:
    assert classify_name(name) is kind


def test_scan_lists_candidates_and_ignores_the_rest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / NAME).write_bytes(b"x")
    (tmp_path / "bad.hdf5").write_bytes(b"x")
    (tmp_path / ("." + NAME + ".tmp")).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    result = scan_directory(tmp_path)
    assert result.ok and set(result.files) == {NAME, "bad.hdf5"}
    assert {n for n, _ in result.ignored} == {"." + NAME + ".tmp", "notes.txt", "sub"}
    missing = scan_directory(tmp_path / "nope")
    assert not missing.ok and missing.files == {} and missing.error


def test_a_fresh_file_waits_for_two_equal_stats_settle_apart() -> None:
    tr = Tracker(WatcherConfig(settle_s=10))
    c = tr.observe(NAME, stat(100, at(0)), at(0), origin="event")
    assert c.next_check_at == at(10) and not tr.due(at(9.9))
    assert [x.rel_path for x in tr.due(at(10))] == [NAME]
    assert tr.settled(c, at(10)) and c.settled_at == at(10)


def test_a_change_starts_the_settle_time_again() -> None:
    tr = Tracker(WatcherConfig(settle_s=10, retry_backoff_s=1))
    c = tr.observe(NAME, stat(100, at(0)), at(0), origin="scan")
    tr.retry_later(c, at(1), "incomplete")
    tr.observe(NAME, stat(200, at(8)), at(8), origin="scan")
    assert c.stable_since == at(8) and c.attempts == 0 and c.problem is None
    assert not tr.settled(c, at(15)) and c.next_check_at == at(18)
    assert tr.settled(c, at(18))


def test_an_old_file_is_settled_at_first_sight() -> None:
    tr = Tracker(WatcherConfig(settle_s=10))
    c = tr.observe(NAME, stat(100, at(-60)), at(0), origin="startup")
    assert c.next_check_at == at(0) and tr.settled(c, at(0))


def test_a_file_dated_in_the_future_needs_the_two_stat_rule() -> None:
    tr = Tracker(WatcherConfig(settle_s=10))
    c = tr.observe(NAME, stat(100, at(3600)), at(0), origin="scan")
    assert c.next_check_at == at(10)
    assert not tr.settled(c, at(5)) and tr.settled(c, at(10))


def test_retries_back_off_and_never_pass_the_grace_deadline() -> None:
    cfg = WatcherConfig(
        settle_s=0, retry_backoff_s=5, retry_backoff_max_s=60, validation_grace_s=100
    )
    tr = Tracker(cfg)
    c = tr.observe(NAME, stat(100, at(0)), at(0), origin="scan")
    delays, now = [], at(0)
    for _ in range(6):
        nxt = tr.retry_later(c, now, "truncated")
        delays.append((nxt - now).total_seconds())
        now = nxt
    assert delays == [5, 10, 20, 40, 25, 0]  # capped by the deadline at 100 s
    assert c.attempts == 6 and c.problem == "truncated"
    assert tr.grace_deadline(c) == at(100)
    assert not tr.grace_expired(c, at(99.9)) and tr.grace_expired(c, at(100))


def test_grace_counts_from_the_last_change_on_disk_not_from_first_sight() -> None:
    """After a restart, a file invalid for longer than the grace is rejected at once."""
    tr = Tracker(WatcherConfig(validation_grace_s=600))
    c = tr.observe(NAME, stat(100, at(-3600)), at(0), origin="startup")
    assert tr.grace_expired(c, at(0))


def test_due_order_is_check_time_then_name() -> None:
    tr = Tracker(WatcherConfig(settle_s=0))
    names = [f"2025-10-02T00:0{k}:00_sb0{k}.hdf5" for k in (3, 1, 2)]
    for n in names:
        tr.observe(n, stat(1, at(-100)), at(0), origin="scan")
    assert [c.rel_path for c in tr.due(at(0))] == sorted(names)
    assert len(tr.due(at(0), limit=2)) == 2
    tr.defer(tr.get(sorted(names)[0]), at(0), 30)  # type: ignore[arg-type]
    assert [c.rel_path for c in tr.due(at(0))] == sorted(names)[1:]
    assert tr.next_due_at() == at(0)
    for n in names:
        tr.drop(n)
    assert tr.next_due_at() is None and len(tr) == 0
