"""Table-driven tests of every name in dsa_stream.naming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dsa_stream import naming
from dsa_stream.exceptions import NamingError

T0 = datetime(2025, 10, 2, 0, 12, 34, tzinfo=UTC)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("2025-10-02T00:12:34_sb00.hdf5", naming.SubbandName(T0, 0)),
        ("2025-10-02T00:12:34_sb15.hdf5", naming.SubbandName(T0, 15)),
        (
            "1999-12-31T23:59:59_sb07.hdf5",
            naming.SubbandName(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), 7),
        ),
    ],
)
def test_subband_round_trip(filename: str, expected: naming.SubbandName) -> None:
    assert naming.parse_subband_filename(filename) == expected
    assert naming.format_subband_filename(expected) == filename
    assert naming.is_subband_filename(filename)


@pytest.mark.parametrize(
    "filename",
    [
        "2025-10-02T00:12:34_sb1.hdf5",
        "2025-10-02T00:12:34_sb001.hdf5",
        "2025-10-02T00:12:34_sb00.h5",
        "2025-10-02 00:12:34_sb00.hdf5",
        "2025-10-02T00:12:34_sb00.hdf5.tmp",
        ".2025-10-02T00:12:34_sb00.hdf5.x1y2z3",
        "2025-13-02T00:12:34_sb00.hdf5",
        "2025-10-02T00:12:34_sb00.phased.hdf5",
    ],
)
def test_subband_rejects(filename: str) -> None:
    assert not naming.is_subband_filename(filename)
    with pytest.raises(NamingError):
        naming.parse_subband_filename(filename)


@pytest.mark.parametrize(
    ("filename", "temporary"),
    [
        (".2025-10-02T00:12:34_sb00.hdf5.AbC123", True),
        ("2025-10-02T00:12:34_sb00.hdf5.tmp", True),
        ("2025-10-02T00:12:34_sb00.hdf5.part", True),
        ("2025-10-02T00:12:34_incomplete.hdf5", True),
        ("2025-10-02T00:12:34_sb00.hdf5", False),
    ],
)
def test_temporary_names(filename: str, temporary: bool) -> None:
    assert naming.is_temporary_filename(filename) is temporary


def test_group_key_rounds_to_nearest_second_and_round_trips() -> None:
    assert naming.group_key(T0 + timedelta(microseconds=499_999)) == "2025-10-02T00:12:34"
    assert naming.group_key(T0 + timedelta(microseconds=500_000)) == "2025-10-02T00:12:35"
    assert naming.group_key(T0 - timedelta(microseconds=1)) == "2025-10-02T00:12:34"
    other_tz = T0.astimezone(timezone(timedelta(hours=-7)))
    assert naming.group_key(other_tz) == "2025-10-02T00:12:34"
    assert naming.parse_group_key("2025-10-02T00:12:34") == T0


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(NamingError, match="naive"):
        naming.group_key(datetime(2025, 10, 2))
    with pytest.raises(NamingError, match="naive"):
        naming.format_subband_filename(naming.SubbandName(datetime(2025, 10, 2), 1))


def test_bad_group_keys() -> None:
    for bad in ("2025-10-02", "2025-10-02T00:12:34Z", "x"):
        with pytest.raises(NamingError):
            naming.parse_group_key(bad)
    with pytest.raises(NamingError):
        naming.truth_filename("nope")
    assert naming.truth_filename("2025-10-02T00:12:34") == "2025-10-02T00:12:34_truth.json"
