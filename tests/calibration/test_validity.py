"""Validity windows and the choice of a table set (pure functions, no registry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsa_stream.calibration.options import SelectionOptions, ValidityOptions
from dsa_stream.calibration.validity import (
    CalSetCandidate,
    CalTableRecord,
    decide,
    select_table_set,
    validity_windows,
)
from dsa_stream.exceptions import CalibrationError

T = datetime(2025, 10, 2, 12, 51, 45, tzinfo=UTC)
H = timedelta(hours=1)


def cand(
    name: str,
    transit: datetime,
    *,
    dec: float = 49.86,
    status: str = "valid",
    gain_status: str | None = None,
    created: datetime | None = None,
    version: int = 1,
    types: tuple[str, ...] = ("bandpass", "gain"),
    opts: ValidityOptions | None = None,
) -> CalSetCandidate:
    windows = validity_windows(transit, opts or ValidityOptions())
    tables = tuple(
        CalTableRecord(
            table_type=kind,  # type: ignore[arg-type]
            path=Path(f"/x/{name}.{kind[0].upper()}"),
            window=windows[kind],  # type: ignore[index]
            status=gain_status if (kind == "gain" and gain_status) else status,
        )
        for kind in types
    )
    return CalSetCandidate(
        set_name=name,
        version=version,
        calibrator="3C147",
        dec_deg=dec,
        transit=transit,
        tables=tables,
        created_at=created,
    )


def test_windows_are_centred_on_the_transit_and_never_open_ended() -> None:
    w = validity_windows(T, ValidityOptions(bandpass_hours=12, gain_hours=2))
    assert w["bandpass"].valid_from == T - 12 * H and w["bandpass"].valid_to == T + 12 * H
    assert w["gain"].valid_from == T - 2 * H and w["gain"].valid_to == T + 2 * H
    assert w["gain"].covers(T + 2 * H) and not w["gain"].covers(T + 2 * H + timedelta(seconds=1))
    with pytest.raises(CalibrationError, match="timezone"):
        validity_windows(T.replace(tzinfo=None), ValidityOptions())
    with pytest.raises(ValueError):
        ValidityOptions(gain_hours=0)


def test_the_window_covers_the_group_before_and_after_the_transit() -> None:
    c = cand("a", T)
    for offset in (-11.9, -0.1, 0.0, 3.0, 11.9):
        sel = select_table_set([c], T + offset * H, 49.86)
        assert sel.chosen is not None and sel.chosen.set_name == "a", offset
    for offset in (-12.1, 12.1, 30.0):
        sel = select_table_set([c], T + offset * H, 49.86)
        assert sel.chosen is None and "does not cover" in sel.rejected[0].reason


def test_the_shortest_window_of_the_set_decides() -> None:
    c = cand("a", T, opts=ValidityOptions(bandpass_hours=24, gain_hours=1))
    assert select_table_set([c], T + 0.5 * H, 49.86).chosen is not None
    sel = select_table_set([c], T + 3 * H, 49.86)
    assert sel.chosen is None and sel.rejected[0].reason.startswith("gain window")


def test_dec_tolerance() -> None:
    c = cand("a", T, dec=49.86)
    assert select_table_set([c], T, 50.8).chosen is not None
    sel = select_table_set([c], T, 51.0)
    assert sel.chosen is None and "tolerance 1.0 deg" in sel.rejected[0].reason
    loose = SelectionOptions(dec_tolerance_deg=2.0)
    assert select_table_set([c], T, 51.0, loose).chosen is not None


def test_nearest_in_observation_time_wins_not_the_newest_created() -> None:
    old_solve_near = cand("near", T - 1 * H, created=T - 400 * H)
    new_solve_far = cand("far", T + 5 * H, created=T + 900 * H)
    for order in ([old_solve_near, new_solve_far], [new_solve_far, old_solve_near]):
        sel = select_table_set(order, T, 49.86)
        assert sel.chosen is not None and sel.chosen.set_name == "near"
        assert [r.set_name for r in sel.rejected] == ["far"]
    # bidirectional: a later transit wins when it is nearer
    sel = select_table_set([cand("before", T - 3 * H), cand("after", T + 2 * H)], T, 49.86)
    assert sel.chosen.set_name == "after" and "+2.00 h" in sel.reason  # type: ignore[union-attr]


def test_ties_are_broken_deterministically() -> None:
    a, b = cand("b-set", T - 1 * H), cand("a-set", T + 1 * H)
    assert select_table_set([a, b], T, 49.86).chosen.set_name == "b-set"  # type: ignore[union-attr]
    assert select_table_set([b, a], T, 49.86).chosen.set_name == "b-set"  # type: ignore[union-attr]
    x, y = cand("x", T - 1 * H), cand("w", T - 1 * H)
    assert select_table_set([x, y], T, 49.86).chosen.set_name == "w"  # type: ignore[union-attr]


def test_qa_failed_superseded_and_incomplete_sets_are_never_selected() -> None:
    rejected_near = cand("rejected", T, status="rejected")
    superseded = cand("old", T + 0.1 * H, status="superseded")
    gain_rejected = cand("halfbad", T + 0.2 * H, gain_status="rejected")
    no_gain = cand("nogain", T + 0.3 * H, types=("bandpass",))
    good_far = cand("good", T + 8 * H)
    sel = select_table_set([rejected_near, superseded, gain_rejected, no_gain, good_far], T, 49.86)
    assert sel.chosen is not None and sel.chosen.set_name == "good"
    reasons = {r.set_name: r.reason for r in sel.rejected}
    assert reasons["rejected"] == "bandpass is rejected, gain is rejected"
    assert reasons["old"].endswith("superseded")
    assert reasons["halfbad"] == "gain is rejected"
    assert reasons["nogain"] == "no gain table"
    only_bad = select_table_set([rejected_near], T, 49.86)
    assert only_bad.chosen is None and only_bad.tables == ()


def test_apply_order_and_decisions() -> None:
    c = cand("a", T)
    assert [p.name for p in c.apply_order()] == ["a.B", "a.G"]
    sel = select_table_set([c], T, 49.86)
    assert decide(sel, SelectionOptions()).action == "calibrated"
    none = select_table_set([], T, 49.86)
    waits = decide(none, SelectionOptions())
    assert waits.action == "awaiting_calibration" and "no valid calibration" in waits.reason
    go_on = decide(none, SelectionOptions(policy="image-uncalibrated"))
    assert go_on.action == "uncalibrated" and "uncalibrated by policy" in go_on.reason
    with pytest.raises(CalibrationError, match="timezone"):
        select_table_set([c], T.replace(tzinfo=None), 49.86)
