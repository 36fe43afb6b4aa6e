"""Mosaic window planner: runs, gaps, span, Dec, RA wrap, order, late members, versions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dsa_stream import instrument, naming
from dsa_stream.exceptions import MosaicError
from dsa_stream.mosaic.options import PlannerOptions
from dsa_stream.mosaic.planner import (
    GroupRecord,
    MemberRef,
    PlannedWindow,
    PlanResult,
    PreviousWindow,
    plan_windows,
)

P = instrument.OBSERVATION_S  # 309.24 s: consecutive groups
T0 = datetime(2026, 1, 1, 23, 20, 0, tzinfo=UTC)  # runs cross UTC midnight
DRA = P * 360.0 / 86164.0905


def grp(
    i: int,
    *,
    t: float | None = None,
    dec: float = 16.0,
    ra0: float = 350.0,
    imaged: bool = True,
    qa: bool = True,
    image: str | None = None,
) -> GroupRecord:
    start = T0 + timedelta(seconds=(i * P if t is None else t) + 0.3)
    return GroupRecord(
        group_key=naming.group_key(start),
        obs_start=start,
        obs_end=start + timedelta(seconds=P),
        dec_deg=dec,
        ra_deg=(ra0 + i * DRA) % 360.0,
        imaged=imaged,
        qa_passed=qa,
        image_id=image or (f"img-{i}-v1" if imaged else None),
    )


def keys(groups: list[GroupRecord], idx) -> tuple[str, ...]:
    return tuple(groups[i].group_key for i in idx)


def ready(result: PlanResult) -> list[PlannedWindow]:
    return [w for w in result.windows if w.status == "ready"]


def built(result: PlanResult, only: set[str] | None = None) -> list[PreviousWindow]:
    """The windows of a plan as the pipeline records them once their mosaics are built."""
    out = []
    for w in result.windows:
        if w.status in ("ready", "current") and (only is None or w.window_key in only):
            members = tuple(
                MemberRef(group_key=m.group_key, image_id=m.image_id) for m in w.members
            )
            out.append(
                PreviousWindow(
                    window_key=w.window_key,
                    version=w.version,
                    built_version=w.version,
                    members=members,
                )
            )
    return out


STRIDE10 = PlannerOptions(stride=10)


def test_default_stride_overlaps_two_groups_and_the_tail_waits() -> None:
    gs = [grp(i) for i in range(26)]
    res = plan_windows(gs)
    assert [w.member_keys for w in ready(res)] == [
        keys(gs, range(0, 10)),
        keys(gs, range(8, 18)),
        keys(gs, range(16, 26)),
    ]
    tail = res.windows[-1]
    assert tail.status == "waiting" and tail.member_keys == keys(gs, (24, 25))
    assert [r.kind for r in tail.reasons] == ["incomplete"]
    assert tail.registry_state() == "open"
    # the key is the first member's group key (its observation start), across midnight
    assert [w.window_key for w in res.windows] == [w.members[0].group_key for w in res.windows]
    assert res.windows[-1].window_key.startswith("2026-01-02T")


@pytest.mark.parametrize(
    ("stride", "starts"),
    [(10, [0, 10, 20]), (8, [0, 8, 16]), (5, [0, 5, 10, 15, 20])],
)
def test_stride_and_overlap(stride: int, starts: list[int]) -> None:
    gs = [grp(i) for i in range(30)]
    res = plan_windows(gs, PlannerOptions(stride=stride))
    got = [w for w in ready(res)]
    assert [gs.index(next(g for g in gs if g.group_key == w.window_key)) for w in got] == starts
    assert all(w.n_members == 10 for w in got)
    covered = {k for w in got for k in w.member_keys}
    assert covered == set(keys(gs, range(max(starts) + 10)))
    for a, b in zip(got, got[1:], strict=False):
        assert len(set(a.member_keys) & set(b.member_keys)) == 10 - stride


def test_stride_larger_than_window_is_refused() -> None:
    with pytest.raises(ValidationError, match="stride"):
        PlannerOptions(window_size=10, stride=11)


def test_seven_minute_gap_splits_windows() -> None:
    times = [i * P for i in range(10)] + [9 * P + 420 + i * P for i in range(10)]
    gs = [grp(i, t=t) for i, t in enumerate(times)]
    res = plan_windows(gs)
    assert [w.member_keys for w in ready(res)] == [keys(gs, range(10)), keys(gs, range(10, 20))]
    # 5.9 min apart is still consecutive
    times = [i * 354.0 for i in range(10)]
    assert len(ready(plan_windows([grp(i, t=t) for i, t in enumerate(times)]))) == 1


def test_a_run_cut_by_a_gap_waits_with_the_gap_as_reason() -> None:
    times = [i * P for i in range(6)] + [5 * P + 900 + i * P for i in range(12)]
    gs = [grp(i, t=t) for i, t in enumerate(times)]
    res = plan_windows(gs)
    first = res.windows[0]
    assert first.status == "waiting" and first.member_keys == keys(gs, range(6))
    kinds = [r.kind for r in first.reasons]
    assert kinds == ["incomplete", "gap"]
    assert "15.00 min" in first.reasons[1].detail
    assert first.reasons[1].group_key == gs[6].group_key
    assert ready(res)[0].member_keys == keys(gs, range(6, 16))


def test_span_over_an_hour_is_never_one_window() -> None:
    opts = PlannerOptions(max_gap_s=420.0)  # lets 6.5-min neighbours through ...
    gs = [grp(i, t=i * 390.0) for i in range(12)]  # ... 9 x 6.5 + 5.15 = 63.7 min
    res = plan_windows(gs, opts)
    assert not ready(res)
    assert all(any(r.kind == "span" for r in w.reasons) for w in res.windows if w.n_members == 10)
    assert plan_windows(gs, opts.model_copy(update={"max_span_s": 3900.0})).ready()


def test_dec_change_of_0p2_deg_splits_windows() -> None:
    gs = [grp(i, dec=16.0 if i < 10 else 16.2) for i in range(20)]
    res = plan_windows(gs, STRIDE10)
    assert [w.member_keys for w in ready(res)] == [keys(gs, range(10)), keys(gs, range(10, 20))]
    assert plan_windows([grp(i, dec=16.0 + 0.005 * i) for i in range(10)]).ready()
    gs = [grp(i, dec=16.0 if i < 5 else 16.2) for i in range(15)]
    first = plan_windows(gs).windows[0]
    assert first.status == "waiting" and [r.kind for r in first.reasons] == [
        "incomplete",
        "dec_change",
    ]


def test_run_across_ra_zero_forms_a_window_in_time_order() -> None:
    gs = [grp(i, ra0=354.0) for i in range(12)]  # RA 354 -> 8.2 deg, across 0/360
    assert any(g.ra_deg < 1 for g in gs) and any(g.ra_deg > 359 for g in gs)
    res = plan_windows(gs, STRIDE10)
    (w,) = ready(res)
    assert w.member_keys == keys(gs, range(10))
    assert w.window_key == gs[0].group_key
    assert w.ra_deg is not None and abs((w.ra_deg - 359.8 + 180) % 360 - 180) < 0.1


def test_shuffled_arrival_order_gives_the_same_windows() -> None:
    gs = [grp(i, imaged=i != 13) for i in range(33)]
    reference = plan_windows(gs).model_dump()
    rng = random.Random(7)
    for _ in range(5):
        shuffled = gs[:]
        rng.shuffle(shuffled)
        assert plan_windows(shuffled).model_dump() == reference
    # listing a group twice (same record) is harmless; conflicting records are an error
    assert plan_windows(gs + gs[:3]).model_dump() == reference
    with pytest.raises(MosaicError, match="twice"):
        plan_windows([*gs, gs[0].model_copy(update={"dec_deg": 30.0})])


def test_replanning_after_a_restart_gives_the_same_windows() -> None:
    gs = [grp(i) for i in range(27)]
    first = plan_windows(gs)
    again = plan_windows(gs, previous=built(first))
    assert [w.window_key for w in again.windows] == [w.window_key for w in first.windows]
    assert [w.status for w in again.windows] == ["current"] * 3 + ["waiting"]
    assert all(w.version == 1 and w.registry_state() == "done" for w in again.windows[:3])
    assert not again.obsolete


def test_members_not_imaged_or_failing_qa_make_the_window_wait() -> None:
    gs = [grp(i) for i in range(10)]
    gs[3] = grp(3, imaged=False)
    gs[7] = grp(7, qa=False)
    (w,) = plan_windows(gs, STRIDE10).windows
    assert w.status == "waiting" and w.n_members == 10 and w.n_members_done == 8
    assert [(r.kind, r.group_key) for r in w.reasons] == [
        ("not_imaged", gs[3].group_key),
        ("qa_failed", gs[7].group_key),
    ]
    row = w.registry_row()
    assert row == {
        "window_key": gs[0].group_key,
        "obs_start": gs[0].obs_start,
        "obs_end": gs[9].obs_end,
        "dec_deg": 16.0,
        "n_members": 10,
        "n_members_done": 8,
        "version": 1,
        "state": "open",
    }


def test_late_first_group_makes_version_2_of_the_built_window() -> None:
    gs = [grp(i) for i in range(14)]
    before = plan_windows(gs[1:], STRIDE10)
    (w1,) = ready(before)
    assert w1.member_keys == keys(gs, range(1, 11))
    after = plan_windows(gs, STRIDE10, previous=built(before))
    w = after.by_key()[w1.window_key]
    assert w.status == "ready" and w.version == 2 and w.previous_version == 1
    assert w.member_keys == keys(gs, range(0, 11))  # the late group joined, nothing dropped
    assert w.changes == (f"late member {gs[0].group_key}",)
    assert w.registry_state() == "ready"
    assert w.obs_start == gs[0].obs_start and w.window_key == gs[1].group_key
    assert [x.member_keys for x in after.windows if x.window_key != w.window_key] == [
        keys(gs, range(11, 14))
    ]


def test_late_group_filling_a_gap_versions_the_built_window_before_it() -> None:
    gs = [grp(i) for i in range(21)]
    present = gs[:10] + gs[11:]
    before = plan_windows(present)
    assert [w.member_keys for w in ready(before)] == [keys(gs, range(10)), keys(gs, range(11, 21))]
    after = plan_windows(gs, previous=built(before))
    by_key = after.by_key()
    assert by_key[gs[0].group_key].version == 2
    assert by_key[gs[0].group_key].member_keys == keys(gs, range(11))
    assert by_key[gs[0].group_key].status == "ready"
    assert by_key[gs[11].group_key].status == "current"
    assert by_key[gs[11].group_key].version == 1
    every = {k for w in after.windows for k in w.member_keys}
    assert every == {g.group_key for g in gs}  # no group left out


def test_two_late_groups_get_a_new_window_instead_of_breaking_the_span() -> None:
    gs = [grp(i) for i in range(22)]
    present = gs[:10] + gs[12:]
    before = plan_windows(present, STRIDE10)
    after = plan_windows(gs, STRIDE10, previous=built(before))
    new = [w for w in after.windows if w.status == "ready"]
    assert len(new) == 1 and new[0].version == 1 and new[0].n_members == 10
    assert {gs[10].group_key, gs[11].group_key} <= set(new[0].member_keys)
    assert [w.status for w in after.windows if w is not new[0]] == ["current", "current"]


def test_late_member_waits_until_it_is_imaged_then_becomes_ready() -> None:
    gs = [grp(i) for i in range(12)]
    before = plan_windows(gs[1:], STRIDE10)
    late = grp(0, imaged=False)
    w = plan_windows([late, *gs[1:]], STRIDE10, previous=built(before)).windows[0]
    assert w.status == "waiting" and w.version == 2 and w.registry_state() == "stale"
    assert [r.kind for r in w.reasons] == ["not_imaged"]


def test_reimaged_member_makes_a_new_version() -> None:
    gs = [grp(i) for i in range(10)]
    prev = built(plan_windows(gs))
    gs[4] = grp(4, image="img-4-v2")
    (w,) = [x for x in plan_windows(gs, previous=prev).windows if x.n_members == 10]
    assert w.status == "ready" and w.version == 2
    assert w.changes == (f"image of {gs[4].group_key} changed (img-4-v1 -> img-4-v2)",)
    # a later re-plan while version 2 is pending keeps version 2 (no double bump)
    pending = [p.model_copy(update={"version": 2}) for p in prev]
    (w,) = [x for x in plan_windows(gs, previous=pending).windows if x.n_members == 10]
    assert w.version == 2


def test_previous_window_never_built_and_re_tiled_is_obsolete() -> None:
    gs = [grp(i) for i in range(1, 8)]
    open_row = PreviousWindow(window_key=gs[0].group_key, version=1)
    res = plan_windows([grp(0), *gs], previous=[open_row])
    assert [o.window_key for o in res.obsolete] == [gs[0].group_key]


def test_inputs_are_checked() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        GroupRecord(
            group_key="2026-01-01T00:00:00",
            obs_start=datetime(2026, 1, 1),
            obs_end=datetime(2026, 1, 1, 0, 5),
            dec_deg=16.0,
        )
    with pytest.raises(ValidationError, match="group key"):
        GroupRecord.model_validate({**grp(0).model_dump(), "group_key": "x"})
    with pytest.raises(ValidationError, match="members"):
        PreviousWindow(window_key="2026-01-01T00:00:00", built_version=1)


@st.composite
def _groups(draw: st.DrawFn) -> list[GroupRecord]:
    n = draw(st.integers(1, 40))
    steps = draw(st.lists(st.sampled_from([P, P, P, P + 20, 380.0, 900.0]), min_size=n, max_size=n))
    decs = draw(st.lists(st.sampled_from([16.0, 16.0, 16.05, 16.3]), min_size=n, max_size=n))
    imaged = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    t, out = 0.0, []
    for i in range(n):
        out.append(grp(i, t=t, dec=decs[i], imaged=imaged[i] or i % 3 != 0))
        t += steps[i]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_groups(), st.sampled_from([10, 8, 5]), st.randoms(use_true_random=False))
def test_invariants(gs: list[GroupRecord], stride: int, rnd: random.Random) -> None:
    opts = PlannerOptions(stride=stride)
    res = plan_windows(gs, opts)
    by_key = {g.group_key: g for g in gs}
    for w in res.windows:
        members = [by_key[k] for k in w.member_keys]
        assert members == sorted(members, key=lambda g: g.obs_start)
        if w.status != "ready":
            assert w.reasons
            continue
        assert w.n_members == 10 and all(m.usable for m in members)
        assert (members[-1].obs_end - members[0].obs_start).total_seconds() <= opts.max_span_s
        for a, b in zip(members, members[1:], strict=False):
            assert (b.mid - a.mid).total_seconds() < opts.max_gap_s
        assert max(abs(m.dec_deg - members[0].dec_deg) for m in members) <= 0.1
    shuffled = gs[:]
    rnd.shuffle(shuffled)
    assert plan_windows(shuffled, opts) == res
    again = plan_windows(gs, opts, previous=built(res))
    assert [w.status for w in again.windows if w.status != "waiting"] == ["current"] * len(
        ready(res)
    )
