"""One registry transaction and the writes that must share it.

A :class:`Txn` is what :meth:`JobStore.transaction` yields and what completion
callbacks receive: the open connection, the transaction's ``now`` (from the
store's clock) and helpers that keep the registry's invariants: deduplicated
enqueue with its audit event, fenced product rows with lineage, and group
transitions that follow :data:`~dsa_stream.registry.states.GROUP_TRANSITIONS`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from dsa_stream.config import WorkerConfig
from dsa_stream.exceptions import RegistryError
from dsa_stream.registry.db import insert
from dsa_stream.registry.models import calibrations, groups, job_events, jobs, product_lineage
from dsa_stream.registry.models import products as products_t
from dsa_stream.registry.records import EnqueueResult, JobSpec, ProductSpec
from dsa_stream.registry.states import (
    CalibrationStatus,
    GroupState,
    JobEvent,
    JobState,
    group_predecessors,
    priority_of,
)

logger = logging.getLogger(__name__)

#: Longest error text kept in ``jobs.last_error`` / ``job_events.detail``.
MAX_DETAIL_CHARS = 4000
_DEDUPE_HOLDING_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)
# Prebuilt statements (parameters at execution): the hot paths skip statement building.
_INSERT_EVENT = job_events.insert()


class ProductConflictError(RegistryError):
    """A product with the same (kind, logical_key, version) belongs to another job."""


def clip(text: str | None) -> str | None:
    """Bound a free-text detail to :data:`MAX_DETAIL_CHARS`."""
    if text is None or len(text) <= MAX_DETAIL_CHARS:
        return text
    return text[: MAX_DETAIL_CHARS - 15] + " ...[truncated]"


class Txn:
    """An open registry transaction (see the module docstring).

    Attributes:
        conn: The connection, inside its transaction (``BEGIN IMMEDIATE`` on SQLite).
        now: Bookkeeping time of this transaction (aware UTC).
        worker_config: Defaults for attempts and timeouts of enqueued jobs.
    """

    def __init__(self, conn: Connection, now: datetime, worker_config: WorkerConfig) -> None:
        self.conn = conn
        self.now = now
        self.worker_config = worker_config

    def event(
        self,
        job_id: int,
        event: JobEvent,
        from_state: JobState | None,
        to_state: JobState,
        *,
        worker_id: str | None = None,
        lease_token: int | None = None,
        attempt: int | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one row to the ``job_events`` audit trail."""
        self.conn.execute(
            _INSERT_EVENT,
            {
                "job_id": job_id,
                "at": self.now,
                "event": str(event),
                "from_state": str(from_state) if from_state is not None else None,
                "to_state": str(to_state),
                "worker_id": worker_id,
                "lease_token": lease_token,
                "attempt": attempt,
                "detail": clip(detail),
            },
        )

    def _holder(self, dedupe_key: str) -> EnqueueResult | None:
        row = self.conn.execute(
            select(jobs.c.id, jobs.c.state)
            .where(
                jobs.c.dedupe_key == dedupe_key,
                jobs.c.state.in_([str(s) for s in _DEDUPE_HOLDING_STATES]),
            )
            .order_by(jobs.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return EnqueueResult(job_id=row.id, created=False, state=JobState(row.state))

    def enqueue(self, spec: JobSpec, *, requeue_of: int | None = None) -> EnqueueResult:
        """Insert a queued job, unless a queued, running or succeeded job holds its key.

        When the key is held, that job is returned with ``created=False``.

        The active-dedupe unique index plus ``ON CONFLICT DO NOTHING`` settles races
        between concurrent enqueuers on PostgreSQL.
        """
        held = self._holder(spec.dedupe_key)
        if held is not None:
            return held
        cfg = self.worker_config
        values: dict[str, Any] = {
            "kind": str(spec.kind),
            "group_id": spec.group_id,
            "window_id": spec.window_id,
            "dedupe_key": spec.dedupe_key,
            "state": str(JobState.QUEUED),
            "priority": spec.priority if spec.priority is not None else priority_of(spec.kind),
            "order_key": spec.order_key,
            "available_at": self.now + timedelta(seconds=spec.delay_s),
            "attempt": 0,
            "max_attempts": spec.max_attempts or cfg.max_attempts,
            "lease_token": 0,
            "timeout_s": spec.timeout_s or cfg.stage_timeouts_s.get(str(spec.kind), 600),
            "cancel_requested": False,
            "requeue_of": requeue_of,
            "payload": spec.payload,
            "created_at": self.now,
            "updated_at": self.now,
        }
        stmt = insert(self.conn, jobs).values(**values).on_conflict_do_nothing()
        new_id = self.conn.execute(stmt.returning(jobs.c.id)).scalar_one_or_none()
        if new_id is None:
            held = self._holder(spec.dedupe_key)
            if held is None:
                raise RegistryError(f"enqueue of {spec.dedupe_key!r} conflicted without a holder")
            return held
        detail = f"requeue of job {requeue_of}" if requeue_of is not None else None
        self.event(new_id, JobEvent.ENQUEUED, None, JobState.QUEUED, detail=detail)
        logger.debug("enqueued job %s (%s)", new_id, spec.dedupe_key)
        return EnqueueResult(job_id=new_id, created=True, state=JobState.QUEUED)

    def add_product(self, spec: ProductSpec, *, job_id: int, lease_token: int) -> int:
        """Insert a product row written by ``job_id`` under ``lease_token``.

        Raises:
            ProductConflictError: if (kind, logical_key, version) is another job's product.
        """
        values: dict[str, Any] = spec.model_dump(exclude={"parents"})
        values.update(
            state=str(spec.state),
            qa_status=None if spec.qa_status is None else str(spec.qa_status),
            validation_status=None
            if spec.validation_status is None
            else str(spec.validation_status),
            job_id=job_id,
            lease_token=lease_token,
            created_at=self.now,
            updated_at=self.now,
        )
        stmt = (
            insert(self.conn, products_t)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["kind", "logical_key", "version"])
            .returning(products_t.c.id)
        )
        product_id = self.conn.execute(stmt).scalar_one_or_none()
        if product_id is None:
            row = self.conn.execute(
                select(products_t.c.id, products_t.c.job_id, products_t.c.lease_token).where(
                    products_t.c.kind == spec.kind,
                    products_t.c.logical_key == spec.logical_key,
                    products_t.c.version == spec.version,
                )
            ).one()
            if (row.job_id, row.lease_token) != (job_id, lease_token):
                raise ProductConflictError(
                    f"product {spec.kind}:{spec.logical_key} v{spec.version} already exists "
                    f"(id {row.id}, job {row.job_id}); write a new version"
                )
            product_id = row.id
        for parent in spec.parents:
            self.link_products(parent, product_id)
        return int(product_id)

    def link_products(self, parent_id: int, child_id: int, relation: str = "input") -> None:
        """Record that ``child_id`` was made from ``parent_id`` (idempotent)."""
        stmt = (
            insert(self.conn, product_lineage)
            .values(parent_id=parent_id, child_id=child_id, relation=relation)
            .on_conflict_do_nothing()
        )
        self.conn.execute(stmt)

    def set_group_state(
        self,
        group_id: int,
        state: GroupState,
        *,
        stage: str | None = None,
        reason: str | None = None,
        missing_subbands: list[int] | None = None,
    ) -> bool:
        """Move a group to ``state`` if the transition is allowed; returns whether it moved."""
        values: dict[str, Any] = {"state": str(state), "updated_at": self.now}
        if stage is not None:
            values["stage"] = stage
        if reason is not None:
            values["reason"] = clip(reason)
        if missing_subbands is not None:
            values["missing_subbands"] = sorted(missing_subbands)
        if state in (GroupState.COMPLETE, GroupState.INCOMPLETE):
            values["completed_at"] = self.now
        allowed = [str(s) for s in group_predecessors(state)]
        result = self.conn.execute(
            update(groups)
            .where(groups.c.id == group_id, groups.c.state.in_(allowed))
            .values(values)
        )
        moved = result.rowcount == 1
        if not moved:
            logger.warning("group %s: transition to %s not allowed from its state", group_id, state)
        return moved

    def add_calibration(
        self,
        product_id: int,
        *,
        valid_from_obs: datetime,
        valid_to_obs: datetime,
        dec_deg: float | None,
        status: CalibrationStatus = CalibrationStatus.CANDIDATE,
        calibrator: str | None = None,
        qa: dict[str, Any] | None = None,
    ) -> int:
        """Record a calibration solution with its validity window in observation time."""
        if valid_to_obs < valid_from_obs:
            raise RegistryError("calibration validity window ends before it starts")
        stmt = calibrations.insert().values(
            product_id=product_id,
            valid_from_obs=valid_from_obs,
            valid_to_obs=valid_to_obs,
            dec_deg=dec_deg,
            calibrator=calibrator,
            status=str(status),
            qa=qa,
            created_at=self.now,
            updated_at=self.now,
        )
        return int(self.conn.execute(stmt.returning(calibrations.c.id)).scalar_one())
