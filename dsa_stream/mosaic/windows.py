"""Input and output models of the mosaic window planner (frozen pydantic models).

:func:`dsa_stream.mosaic.planner.plan_windows` takes :class:`GroupRecord` and
:class:`PreviousWindow` and returns a :class:`PlanResult` of :class:`PlannedWindow`;
``PlannedWindow.registry_row()`` gives the columns of the registry's ``mosaic_windows``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dsa_stream import naming
from dsa_stream.exceptions import NamingError
from dsa_stream.mosaic.options import PlannerOptions, aware_utc

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

#: Why a window is not ready.
ReasonKind = Literal["gap", "span", "dec_change", "not_imaged", "qa_failed", "incomplete"]
#: ready: build it at ``version``; waiting: see ``reasons``; current: built, up to date.
WindowStatus = Literal["ready", "waiting", "current"]
#: Values of the registry's ``mosaic_windows.state`` column.
RegistryWindowState = Literal["open", "ready", "done", "stale"]


class GroupRecord(BaseModel):
    """What the planner needs to know about one observation (group)."""

    model_config = _FROZEN

    group_key: str
    """Group key (observation start from the data, ``YYYY-MM-DDTHH:MM:SS``)."""
    obs_start: datetime
    """Observation start (UTC)."""
    obs_end: datetime
    """Observation end (UTC)."""
    obs_mid: datetime | None = None
    """Observation mid time (UTC); default: halfway between start and end."""
    dec_deg: float
    """Pointing declination (deg)."""
    ra_deg: float | None = None
    """Pointing RA at mid time (deg; informational: windows are defined in time only)."""
    imaged: bool = False
    """An image of this group exists."""
    qa_passed: bool = False
    """The image passed its QA."""
    image_id: str | None = None
    """Identity of the image (e.g. registry product key and version)."""

    @field_validator("group_key")
    @classmethod
    def _key(cls, value: str) -> str:
        try:
            naming.parse_group_key(value)
        except NamingError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("obs_start", "obs_end", "obs_mid")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else aware_utc(value)

    @model_validator(mode="after")
    def _times(self) -> GroupRecord:
        if self.obs_end <= self.obs_start:
            raise ValueError(f"group {self.group_key}: obs_end is not after obs_start")
        if self.obs_mid is None:
            mid = self.obs_start + (self.obs_end - self.obs_start) / 2
            object.__setattr__(self, "obs_mid", mid)
        elif not self.obs_start <= self.obs_mid <= self.obs_end:
            raise ValueError(f"group {self.group_key}: obs_mid outside [obs_start, obs_end]")
        return self

    @property
    def mid(self) -> datetime:
        """Observation mid time (always set after validation)."""
        assert self.obs_mid is not None
        return self.obs_mid

    @property
    def usable(self) -> bool:
        """Imaged with QA passed: may go into a mosaic."""
        return self.imaged and self.qa_passed


class MemberRef(BaseModel):
    """A member of a built mosaic: group key and the identity of the image used."""

    model_config = _FROZEN

    group_key: str
    image_id: str | None = None


class PreviousWindow(BaseModel):
    """A window the pipeline already knows (a ``mosaic_windows`` row and its lineage)."""

    model_config = _FROZEN

    window_key: str
    """Key of the window."""
    version: int = Field(1, ge=1)
    """Version of the row (the latest planned version)."""
    built_version: int | None = Field(None, ge=1)
    """Latest version of which a mosaic was built (None: never built)."""
    members: tuple[MemberRef, ...] = ()
    """Members of ``built_version`` (required when it is set)."""

    @model_validator(mode="after")
    def _members(self) -> PreviousWindow:
        if self.built_version is not None and not self.members:
            raise ValueError(f"window {self.window_key}: a built window needs its members")
        return self


class WindowMember(BaseModel):
    """A member group of a planned window."""

    model_config = _FROZEN

    group_key: str
    obs_start: datetime
    obs_mid: datetime
    obs_end: datetime
    dec_deg: float
    ra_deg: float | None
    imaged: bool
    qa_passed: bool
    image_id: str | None


class WindowReason(BaseModel):
    """Why a window is waiting."""

    model_config = _FROZEN

    kind: ReasonKind
    detail: str
    group_key: str | None = None
    """The group the reason is about, if one."""


class PlannedWindow(BaseModel):
    """One window of the plan."""

    model_config = _FROZEN

    window_key: str
    """Stable key: the group key of the first member when first planned."""
    version: int
    """Version to build (ready/waiting) or that is built (current)."""
    status: WindowStatus
    members: tuple[WindowMember, ...]
    """Members in observation-time order."""
    reasons: tuple[WindowReason, ...] = ()
    """Why the window waits (empty unless ``status == 'waiting'``)."""
    changes: tuple[str, ...] = ()
    """How the members differ from ``previous_version`` (late member, new image ...)."""
    previous_version: int | None = None
    """The built version this one supersedes (None: never built)."""
    obs_start: datetime
    """First member's observation start."""
    obs_end: datetime
    """Last member's observation end."""
    dec_deg: float
    """Median Dec of the members."""
    ra_deg: float | None = None
    """Circular mean of the members' RA (deg, [0, 360)); None when RAs are not given."""

    @property
    def n_members(self) -> int:
        """Number of members."""
        return len(self.members)

    @property
    def n_members_done(self) -> int:
        """Members imaged with QA passed."""
        return sum(m.imaged and m.qa_passed for m in self.members)

    @property
    def member_keys(self) -> tuple[str, ...]:
        """Group keys of the members in observation-time order."""
        return tuple(m.group_key for m in self.members)

    def registry_state(self) -> RegistryWindowState:
        """State for ``mosaic_windows.state``: open / ready / done / stale.

        ``stale`` is a built window whose next version waits for members.
        """
        if self.status == "current":
            return "done"
        if self.status == "ready":
            return "ready"
        return "stale" if self.previous_version is not None else "open"

    def registry_row(self) -> dict[str, Any]:
        """The ``mosaic_windows`` columns of this window."""
        return {
            "window_key": self.window_key,
            "obs_start": self.obs_start,
            "obs_end": self.obs_end,
            "dec_deg": self.dec_deg,
            "n_members": self.n_members,
            "n_members_done": self.n_members_done,
            "version": self.version,
            "state": self.registry_state(),
        }


class ObsoleteWindow(BaseModel):
    """A previously known window that is no longer part of the plan."""

    model_config = _FROZEN

    window_key: str
    version: int
    built_version: int | None
    reason: str


class PlanResult(BaseModel):
    """The windows of a plan, in observation-time order."""

    model_config = _FROZEN

    options: PlannerOptions
    windows: tuple[PlannedWindow, ...]
    obsolete: tuple[ObsoleteWindow, ...] = ()
    """Known windows that the plan no longer contains (never-built windows re-tiled
    after a late group; their rows can be dropped or marked stale)."""

    def ready(self) -> tuple[PlannedWindow, ...]:
        """Windows to build now."""
        return tuple(w for w in self.windows if w.status == "ready")

    def by_key(self) -> dict[str, PlannedWindow]:
        """Windows by key."""
        return {w.window_key: w for w in self.windows}
