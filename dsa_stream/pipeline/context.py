"""What every pipeline handler needs: settings, the job store and the site's roots."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from dsa_stream.config import Settings
from dsa_stream.exceptions import ConfigError
from dsa_stream.registry import Claim, GroupUpdate, JobSpec, JobStore, ProductSpec, Txn

#: Root ids under which the registry stores paths (a root is one configuration entry).
ROOT_IDS = ("incoming", "staging", "products", "quarantine", "logs")


@dataclass(frozen=True)
class PipelineContext:
    """The settings, the store, and the absolute path of every root id."""

    settings: Settings
    store: JobStore
    roots: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, store: JobStore) -> PipelineContext:
        """A context whose roots are the site directories (created if missing)."""
        roots = {name: settings.paths.resolve(name) for name in ROOT_IDS}  # type: ignore[arg-type]
        for path in roots.values():
            path.mkdir(parents=True, exist_ok=True)
        return cls(settings, store, roots)

    def path(self, root_id: str, rel_path: str) -> Path:
        """Absolute path of a registry (root id, relative path) pair."""
        try:
            return self.roots[root_id] / rel_path
        except KeyError as exc:
            raise ConfigError(f"unknown root id {root_id!r}") from exc

    def rel(self, root_id: str, path: Path) -> str:
        """Path relative to a root (raises if ``path`` is outside it)."""
        try:
            return str(path.resolve().relative_to(self.roots[root_id].resolve()))
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{path} is not under root {root_id!r}") from exc


class StageOutcome(BaseModel):
    """What a handler hands back for the completion transaction."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    products: tuple[ProductSpec, ...] = ()
    next_jobs: tuple[JobSpec, ...] = ()
    group_update: GroupUpdate | None = None
    in_transaction: Callable[[Txn], None] | None = None
    """Extra writes in the same transaction (e.g. calibrations, window membership)."""
    detail: str | None = None


@dataclass
class StageRun:
    """Per-attempt handles a handler uses while its stage runs."""

    claim: Claim
    cancel: threading.Event
    """Set when the stage must stop now (lease lost, job cancelled, abort)."""
    log_path: Path
    """Where the stage's own and its tools' output goes."""
    progress: Callable[[float], None]
    """Report progress 0..1 (sent with the next heartbeat)."""

    @property
    def token(self) -> str:
        """Unique name part for this attempt's staging outputs."""
        return f"j{self.claim.job_id}-t{self.claim.lease_token}"


class Handler(Protocol):
    """Runs one job kind. Raise a :class:`~dsa_stream.exceptions.DsaStreamError` to fail."""

    def __call__(self, ctx: PipelineContext, run: StageRun) -> StageOutcome:
        """Run the stage for ``run.claim`` and describe what to commit."""
        ...


def payload(claim: Claim, key: str, default: Any = None) -> Any:
    """A value of the claim's JSON payload."""
    return (claim.payload or {}).get(key, default)
