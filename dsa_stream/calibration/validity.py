"""Validity windows of table sets and the choice of a set for a target group (pure functions).

Windows are in observation time and centred on the calibrator transit (from the data):
``[transit - h, transit + h]`` with ``h`` per table type
(:class:`~dsa_stream.calibration.options.ValidityOptions`). They are never open-ended
and never depend on when a set was solved or registered.

Choosing a set for a target group (:func:`select_table_set`), given every candidate
the registry returned:

1. only sets whose status is ``valid`` for every table (QA-failed sets are
   ``rejected``, replaced ones ``superseded``) are considered;
2. the set must have every required table type, and the window of *each* of its
   tables must contain the group's observation time (its middle, from its data):
   a gain table was solved with its own bandpass applied, so tables are never mixed
   across sets;
3. the set's Dec must be within ``dec_tolerance_deg`` of the group's pointing Dec;
4. among the remaining sets the one whose calibrator transit is nearest in observation
   time wins, before or after the group (bidirectional); ties go to the earlier
   transit, then to the smaller set name. Creation times play no part.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from dsa_stream.calibration.options import (
    TABLE_TYPES,
    SelectionOptions,
    TableType,
    ValidityOptions,
)
from dsa_stream.exceptions import CalibrationError

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
#: The status of a table that may be applied.
VALID = "valid"


class ValidityWindow(BaseModel):
    """An observation-time interval (inclusive at both ends)."""

    model_config = _FROZEN

    valid_from: datetime
    valid_to: datetime

    def covers(self, when: datetime) -> bool:
        """True when ``when`` lies inside the window."""
        return self.valid_from <= when <= self.valid_to


def validity_windows(transit: datetime, opts: ValidityOptions) -> dict[TableType, ValidityWindow]:
    """The window of each table type, centred on the calibrator transit."""
    if transit.tzinfo is None:
        raise CalibrationError("the transit time must be timezone-aware UTC")
    out: dict[TableType, ValidityWindow] = {}
    for kind in TABLE_TYPES:
        half = timedelta(hours=opts.half_width_hours(kind))
        out[kind] = ValidityWindow(valid_from=transit - half, valid_to=transit + half)
    return out


class CalTableRecord(BaseModel):
    """One registered table of a set (what the registry knows about it)."""

    model_config = _FROZEN

    table_type: TableType
    path: Path
    window: ValidityWindow
    status: str
    calibration_id: int | None = None
    product_id: int | None = None


class CalSetCandidate(BaseModel):
    """A registered table set: its tables and where it was solved."""

    model_config = _FROZEN

    set_name: str
    version: int = 1
    calibrator: str
    dec_deg: float
    """Pointing Dec of the calibrator group (deg)."""
    transit: datetime
    """Calibrator transit (observation time, from the data)."""
    tables: tuple[CalTableRecord, ...]
    created_at: datetime | None = None
    """Bookkeeping only: never used to choose."""

    def table(self, table_type: TableType) -> CalTableRecord | None:
        """The table of one type, if the set has it."""
        for t in self.tables:
            if t.table_type == table_type:
                return t
        return None

    def apply_order(self) -> tuple[Path, ...]:
        """Table paths in apply order (bandpass, then gains)."""
        order = {kind: i for i, kind in enumerate(TABLE_TYPES)}
        return tuple(t.path for t in sorted(self.tables, key=lambda t: order[t.table_type]))


class Rejection(BaseModel):
    """Why a candidate set was not chosen."""

    model_config = _FROZEN

    set_name: str
    version: int
    reason: str


class Selection(BaseModel):
    """The outcome of choosing a set for one group."""

    model_config = _FROZEN

    obs_time: datetime
    dec_deg: float
    chosen: CalSetCandidate | None
    reason: str
    """Why this set (or why none)."""
    rejected: tuple[Rejection, ...] = ()

    @property
    def tables(self) -> tuple[Path, ...]:
        """Paths to apply, in order (empty when nothing was chosen)."""
        return self.chosen.apply_order() if self.chosen is not None else ()


def _why_not(
    cand: CalSetCandidate, obs_time: datetime, dec_deg: float, opts: SelectionOptions
) -> str | None:
    """The reason a candidate is unusable for (obs_time, dec), or None."""
    bad = [t for t in cand.tables if t.status != VALID]
    if bad:
        return ", ".join(f"{t.table_type} is {t.status}" for t in bad)
    for kind in opts.required_types:
        table = cand.table(kind)
        if table is None:
            return f"no {kind} table"
        if not table.window.covers(obs_time):
            w = table.window
            return (
                f"{kind} window {w.valid_from.isoformat()} .. {w.valid_to.isoformat()} "
                f"does not cover {obs_time.isoformat()}"
            )
    if abs(cand.dec_deg - dec_deg) > opts.dec_tolerance_deg:
        return (
            f"solved at Dec {cand.dec_deg:.3f} deg, group at {dec_deg:.3f} deg "
            f"(tolerance {opts.dec_tolerance_deg} deg)"
        )
    return None


def select_table_set(
    candidates: Sequence[CalSetCandidate],
    obs_time: datetime,
    dec_deg: float,
    opts: SelectionOptions | None = None,
) -> Selection:
    """Choose the set for a group observed at ``obs_time`` (see the module docstring).

    Args:
        candidates: Registered sets (any status, any window; unusable ones are
            reported in ``rejected``).
        obs_time: The group's observation time (its middle), from its data.
        dec_deg: The group's pointing Dec (deg).
        opts: Tolerance, required table types.
    """
    if obs_time.tzinfo is None:
        raise CalibrationError("the observation time must be timezone-aware UTC")
    opts = opts or SelectionOptions()
    usable: list[CalSetCandidate] = []
    rejected: list[Rejection] = []
    for cand in candidates:
        why = _why_not(cand, obs_time, dec_deg, opts)
        if why is None:
            usable.append(cand)
        else:
            rejected.append(Rejection(set_name=cand.set_name, version=cand.version, reason=why))
    if not usable:
        return Selection(
            obs_time=obs_time,
            dec_deg=dec_deg,
            chosen=None,
            reason=f"no valid calibration covers {obs_time.isoformat()} at Dec {dec_deg:.3f} "
            f"deg ({len(candidates)} candidate set(s) examined)",
            rejected=tuple(rejected),
        )
    usable.sort(
        key=lambda c: (
            abs((c.transit - obs_time).total_seconds()),
            c.transit,
            c.set_name,
            -c.version,
        )
    )
    best = usable[0]
    offset_h = (best.transit - obs_time).total_seconds() / 3600.0
    for other in usable[1:]:
        rejected.append(
            Rejection(
                set_name=other.set_name,
                version=other.version,
                reason=f"transit farther in observation time than {best.set_name}",
            )
        )
    return Selection(
        obs_time=obs_time,
        dec_deg=dec_deg,
        chosen=best,
        reason=f"{best.set_name} v{best.version}: nearest transit ({offset_h:+.2f} h)",
        rejected=tuple(rejected),
    )


class Decision(BaseModel):
    """What the calibrate stage decided for one group."""

    model_config = _FROZEN

    action: Literal["calibrated", "awaiting_calibration", "uncalibrated"]
    """calibrated: apply ``selection.chosen``; awaiting_calibration: wait (policy
    ``wait``); uncalibrated: go on without calibration (policy ``image-uncalibrated``)."""
    reason: str
    selection: Selection | None = None
    data_column: Literal["DATA", "CORRECTED_DATA"] = "DATA"
    """Column holding the data to image (CORRECTED_DATA after applycal)."""


def decide(selection: Selection, opts: SelectionOptions) -> Decision:
    """Apply, wait or go on uncalibrated, from a selection and the policy."""
    if selection.chosen is not None:
        return Decision(action="calibrated", reason=selection.reason, selection=selection)
    if opts.policy == "wait":
        return Decision(
            action="awaiting_calibration",
            reason=f"waiting for calibration: {selection.reason}",
            selection=selection,
        )
    return Decision(
        action="uncalibrated",
        reason=f"imaged uncalibrated by policy: {selection.reason}",
        selection=selection,
    )
