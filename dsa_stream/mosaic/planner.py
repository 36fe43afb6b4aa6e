"""Mosaic window planner: which consecutive groups are mosaicked together.

A pure function of its inputs (the group records and the windows already known), so
re-planning after a restart, or with the groups listed in any order, gives the same
windows.

Rules (:class:`~dsa_stream.mosaic.options.PlannerOptions`):

1. Groups are ordered by observation mid time (never by registration or creation).
2. A *run* is a maximal sequence of groups whose neighbours are less than
   ``max_gap_s`` apart (mid to mid) and whose Dec is within ``dec_tolerance_deg`` of the
   run's first group. A gap or a Dec change ends a run.
3. Windows tile each run from its first group: window *j* holds the groups
   ``j*stride .. j*stride + window_size - 1`` of the run. A window is *ready* when it has
   ``window_size`` members, spans at most ``max_span_s`` (first start to last end) and
   every member is imaged with QA passed; otherwise it is *waiting* with its reasons.
   The last, partial window of a run waits for more groups (``incomplete``; when the run
   is closed by a later group, also ``gap`` or ``dec_change``).
4. A window's key is the group key of its first member (``YYYY-MM-DDTHH:MM:SS``, the
   observation start from the data) when the window is first planned, and never changes.
5. Windows that were built (``PreviousWindow.built_version``) are pinned: their members
   stay together and the rest of the run is tiled around them, continuing their grid.
   A late group (one that was missing when a neighbouring window was built) that no
   regular window can take joins the adjacent built window if the span rule still
   holds (one group with the default 10 x 5.15 min in 60 min): that window is reported
   with ``version = built_version + 1`` and the new member list. Otherwise a new
   window of ``window_size`` groups is formed over it. A late group never becomes a
   silent gap.
6. A built window whose members or member images changed (re-imaged, QA now failed)
   gets ``version = built_version + 1`` too; it is ``ready`` once every member is usable.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from dsa_stream.exceptions import MosaicError
from dsa_stream.mosaic.options import PlannerOptions
from dsa_stream.mosaic.windows import (
    GroupRecord,
    MemberRef,
    ObsoleteWindow,
    PlannedWindow,
    PlanResult,
    PreviousWindow,
    WindowMember,
    WindowReason,
)

__all__ = [
    "GroupRecord",
    "MemberRef",
    "ObsoleteWindow",
    "PlanResult",
    "PlannedWindow",
    "PreviousWindow",
    "WindowMember",
    "WindowReason",
    "plan_windows",
]

logger = logging.getLogger(__name__)


# -- runs ---------------------------------------------------------------------------


@dataclass
class _Run:
    groups: list[GroupRecord]
    end_reason: WindowReason | None
    """Why the run ends (None: it is the latest run and may still grow)."""


@dataclass
class _Span:
    start: int
    end: int
    pin: PreviousWindow | None = None
    absorbed: list[str] = field(default_factory=list)


def _sorted_unique(groups: Iterable[GroupRecord]) -> list[GroupRecord]:
    by_key: dict[str, GroupRecord] = {}
    for g in groups:
        if g.group_key in by_key and by_key[g.group_key] != g:
            raise MosaicError(f"group {g.group_key} is listed twice with different records")
        by_key[g.group_key] = g
    return sorted(by_key.values(), key=lambda g: (g.mid, g.group_key))


def _minutes(td: timedelta) -> str:
    return f"{td.total_seconds() / 60:.2f} min"


def _split_runs(recs: list[GroupRecord], opts: PlannerOptions) -> list[_Run]:
    if not recs:
        return []
    runs: list[_Run] = []
    cur = [recs[0]]
    for prev, g in zip(recs, recs[1:], strict=False):
        gap = g.mid - prev.mid
        ddec = g.dec_deg - cur[0].dec_deg
        reason = None
        if gap.total_seconds() >= opts.max_gap_s:
            reason = WindowReason(
                kind="gap",
                detail=f"{_minutes(gap)} from {prev.group_key} to the next group "
                f"{g.group_key} (limit {opts.max_gap_s / 60:.2f} min)",
                group_key=g.group_key,
            )
        elif abs(ddec) > opts.dec_tolerance_deg:
            reason = WindowReason(
                kind="dec_change",
                detail=f"Dec changes by {ddec:+.3f} deg at {g.group_key} "
                f"(tolerance {opts.dec_tolerance_deg} deg)",
                group_key=g.group_key,
            )
        if reason is None:
            cur.append(g)
        else:
            runs.append(_Run(cur, reason))
            cur = [g]
    runs.append(_Run(cur, None))
    return runs


# -- layout of one run ----------------------------------------------------------------


def _span_fits(run: _Run, start: int, end: int, opts: PlannerOptions) -> bool:
    first, last = run.groups[start], run.groups[end - 1]
    return (last.obs_end - first.obs_start).total_seconds() <= opts.max_span_s


def _pins_in_run(run: _Run, pins: dict[str, PreviousWindow], placed: set[str]) -> list[_Span]:
    idx = {g.group_key: i for i, g in enumerate(run.groups)}
    spans = []
    for key, pin in pins.items():
        if key in placed:
            continue
        where = [idx.get(m.group_key) for m in pin.members]
        if any(i is None for i in where):
            continue
        pos = [i for i in where if i is not None]
        spans.append(_Span(min(pos), max(pos) + 1, pin))
        placed.add(key)
    return sorted(spans, key=lambda s: (s.start, s.end))


def _uncovered(n: int, spans: list[_Span]) -> list[tuple[int, int]]:
    covered = [False] * n
    for sp in spans:
        covered[sp.start : sp.end] = [True] * (sp.end - sp.start)
    segments, i = [], 0
    while i < n:
        if covered[i]:
            i += 1
            continue
        j = i
        while j < n and not covered[j]:
            j += 1
        segments.append((i, j))
        i = j
    return segments


def _absorb(
    run: _Run, lo: int, hi: int, left: _Span | None, right: _Span | None, opts: PlannerOptions
) -> bool:
    """Put late groups ``lo..hi-1`` into an adjacent built window if the span allows."""
    keys = [g.group_key for g in run.groups[lo:hi]]
    if left is not None and left.end == lo and _span_fits(run, left.start, hi, opts):
        left.end = hi
        left.absorbed += keys
        return True
    if right is not None and right.start == hi and _span_fits(run, lo, right.end, opts):
        right.start = lo
        right.absorbed += keys
        return True
    return False


def _fill_segment(
    run: _Run,
    seg: tuple[int, int],
    left: _Span | None,
    right: _Span | None,
    opts: PlannerOptions,
) -> list[_Span]:
    """Windows over the uncovered groups ``seg`` between built windows (or run ends)."""
    s, e = seg
    n, size, stride = len(run.groups), opts.window_size, opts.stride
    overlap = size - stride
    a = max(0, s - overlap, left.start + 1 if left else 0)
    limit = right.start + overlap if right else n
    out: list[_Span] = []
    while a + size <= limit and a < e:
        out.append(_Span(a, a + size))
        a += stride
    if right is None:
        if a < n:
            out.append(_Span(a, n))  # the partial window waiting for more groups
        return out
    done_to = max([s] + [sp.end for sp in out])
    if done_to >= e:
        return out
    if _absorb(run, done_to, e, left if done_to == s else None, right, opts):
        return out
    b = max(0, min(done_to, e - stride, n - size))
    out.append(_Span(b, min(b + size, n)))
    return out


def _layout_run(
    run: _Run, pins: dict[str, PreviousWindow], placed: set[str], opts: PlannerOptions
) -> list[_Span]:
    n, overlap = len(run.groups), opts.window_size - opts.stride
    pinned = _pins_in_run(run, pins, placed)
    spans = list(pinned)
    for seg in _uncovered(n, pinned):
        left = max((p for p in pinned if p.end == seg[0]), key=lambda p: p.start, default=None)
        right = min((p for p in pinned if p.start == seg[1]), key=lambda p: p.end, default=None)
        spans += _fill_segment(run, seg, left, right, opts)
    if pinned and run.end_reason is None:
        last = max(spans, key=lambda sp: (sp.end, sp.start))
        if last.pin is not None and last.end == n and last.end - overlap < n:
            spans.append(_Span(last.end - overlap, n))
    return sorted(spans, key=lambda sp: (sp.start, sp.end))


# -- windows --------------------------------------------------------------------------


def _member(g: GroupRecord) -> WindowMember:
    return WindowMember(
        group_key=g.group_key,
        obs_start=g.obs_start,
        obs_mid=g.mid,
        obs_end=g.obs_end,
        dec_deg=g.dec_deg,
        ra_deg=g.ra_deg,
        imaged=g.imaged,
        qa_passed=g.qa_passed,
        image_id=g.image_id,
    )


def _rule_reasons(
    members: Sequence[GroupRecord], opts: PlannerOptions, end_reason: WindowReason | None
) -> list[WindowReason]:
    reasons: list[WindowReason] = []
    if len(members) < opts.window_size:
        reasons.append(
            WindowReason(
                kind="incomplete",
                detail=f"{len(members)} of {opts.window_size} consecutive groups so far",
            )
        )
        if end_reason is not None:
            reasons.append(end_reason)
    span = members[-1].obs_end - members[0].obs_start
    if span.total_seconds() > opts.max_span_s:
        reasons.append(
            WindowReason(
                kind="span",
                detail=f"spans {_minutes(span)} > {opts.max_span_s / 60:.2f} min",
            )
        )
    for g in members:
        if not g.imaged:
            reasons.append(
                WindowReason(kind="not_imaged", detail="not imaged yet", group_key=g.group_key)
            )
        elif not g.qa_passed:
            reasons.append(
                WindowReason(kind="qa_failed", detail="image failed QA", group_key=g.group_key)
            )
    return reasons


def _changes(prev: PreviousWindow, members: Sequence[GroupRecord], late: list[str]) -> list[str]:
    old = {m.group_key: m.image_id for m in prev.members}
    new = {g.group_key: g.image_id for g in members}
    out = [f"late member {k}" for k in late]
    out += [f"added {k}" for k in new if k not in old and k not in late]
    out += [f"removed {k}" for k in old if k not in new]
    out += [
        f"image of {k} changed ({old[k]} -> {new[k]})" for k in new if k in old and old[k] != new[k]
    ]
    return out


def _mean_ra(values: list[float | None]) -> float | None:
    """Circular mean of RAs (deg), safe across 0/360; None if any is missing."""
    if not values or any(v is None for v in values):
        return None
    rad = [math.radians(v) for v in values if v is not None]
    x, y = sum(math.cos(r) for r in rad), sum(math.sin(r) for r in rad)
    return math.degrees(math.atan2(y, x)) % 360.0


def _window(
    run: _Run,
    span: _Span,
    previous: dict[str, PreviousWindow],
    opts: PlannerOptions,
) -> PlannedWindow:
    members = run.groups[span.start : span.end]
    key = span.pin.window_key if span.pin is not None else members[0].group_key
    closed = run.end_reason if span.end == len(run.groups) else None
    reasons = _rule_reasons(members, opts, closed)
    prev = previous.get(key)
    version, status, changes = (prev.version if prev else 1), "waiting", []
    built = prev.built_version if prev else None
    if prev is not None and built is not None:
        changes = _changes(prev, members, span.absorbed)
        version = built if not changes else max(prev.version, built + 1)
    if not reasons:
        status = "current" if built is not None and not changes else "ready"
    elif built is not None and not changes:
        version = max(prev.version if prev else 1, built + 1)
        changes = ["a member is no longer usable"]
    return PlannedWindow(
        window_key=key,
        version=version,
        status=status,  # type: ignore[arg-type]
        members=tuple(_member(g) for g in members),
        reasons=tuple(reasons) if status == "waiting" else (),
        changes=tuple(changes),
        previous_version=built,
        obs_start=members[0].obs_start,
        obs_end=members[-1].obs_end,
        dec_deg=statistics.median(g.dec_deg for g in members),
        ra_deg=_mean_ra([g.ra_deg for g in members]),
    )


def _detached(
    pin: PreviousWindow, recs: dict[str, GroupRecord], opts: PlannerOptions
) -> PlannedWindow | ObsoleteWindow:
    """A built window whose members are no longer in one run (records gone or changed)."""
    present = sorted(
        (recs[m.group_key] for m in pin.members if m.group_key in recs),
        key=lambda g: (g.mid, g.group_key),
    )
    missing = [m.group_key for m in pin.members if m.group_key not in recs]
    if not present:
        return ObsoleteWindow(
            window_key=pin.window_key,
            version=pin.version,
            built_version=pin.built_version,
            reason="none of its member groups is known any more",
        )
    run = _Run(present, None)
    win = _window(run, _Span(0, len(present), pin), {pin.window_key: pin}, opts)
    extra = [
        WindowReason(kind="incomplete", detail="member group not known", group_key=k)
        for k in missing
    ]
    extra += _split_reasons(present, opts)
    return win.model_copy(update={"status": "waiting", "reasons": win.reasons + tuple(extra)})


def _split_reasons(present: list[GroupRecord], opts: PlannerOptions) -> list[WindowReason]:
    runs = _split_runs(present, opts)
    return [r.end_reason for r in runs if r.end_reason is not None]


def plan_windows(
    groups: Iterable[GroupRecord],
    options: PlannerOptions | None = None,
    previous: Iterable[PreviousWindow] = (),
) -> PlanResult:
    """Plan the mosaic windows of a set of groups.

    Args:
        groups: Every known group of the period being planned (any order), including
            groups not imaged yet, so that they are waited for rather than seen as gaps.
        options: Window rules (defaults: 10 groups, stride 8, 6 min, 60 min, 0.1 deg).
        previous: Windows already known to the pipeline; built ones are pinned.

    Returns:
        The windows in observation-time order, and known windows no longer planned.

    Raises:
        MosaicError: if a group key is listed twice with different records, or two
            previous windows share a key.
    """
    opts = options or PlannerOptions()
    recs = _sorted_unique(groups)
    prev_list = list(previous)
    prev = {p.window_key: p for p in prev_list}
    if len(prev) != len(prev_list):
        raise MosaicError("two previous windows have the same key")
    pins = {k: p for k, p in prev.items() if p.built_version is not None}
    placed: set[str] = set()
    windows: list[PlannedWindow] = []
    obsolete: list[ObsoleteWindow] = []
    for run in _split_runs(recs, opts):
        windows += [_window(run, sp, prev, opts) for sp in _layout_run(run, pins, placed, opts)]
    by_key = {g.group_key: g for g in recs}
    for key, pin in pins.items():
        if key not in placed:
            item = _detached(pin, by_key, opts)
            if isinstance(item, PlannedWindow):
                windows.append(item)
            else:
                obsolete.append(item)
    keys = [w.window_key for w in windows]
    if len(set(keys)) != len(keys):
        raise MosaicError(f"planner produced duplicate window keys: {sorted(keys)}")
    obsolete += [
        ObsoleteWindow(
            window_key=k,
            version=p.version,
            built_version=p.built_version,
            reason="re-tiled: its first group no longer starts a window",
        )
        for k, p in prev.items()
        if k not in set(keys) and k not in pins
    ]
    windows.sort(key=lambda w: (w.members[0].obs_mid, w.window_key))
    logger.debug(
        "planned %d windows (%d ready)", len(windows), sum(w.status == "ready" for w in windows)
    )
    return PlanResult(options=opts, windows=tuple(windows), obsolete=tuple(obsolete))
