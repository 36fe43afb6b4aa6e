"""Mosaic windows in the registry: plan after every image, enqueue ready windows.

The planner (:func:`dsa_stream.mosaic.plan_windows`, a pure function) sees every
group known within :data:`PLAN_HORIZON` of the group just imaged, in observation
time (never registration order): imaged groups with their image's QA, groups not
imaged yet (waited for, not treated as gaps), and the known windows (built ones are
pinned with their members). Its result is written to ``mosaic_windows`` in the same
transaction as the image commit, and every ready window gets a ``mosaic`` job whose
dedupe key carries the window version, so a late member or a new member image
builds version + 1 instead of leaving a silent gap. Quarantined and failed groups
are not part of the plan: they are real gaps.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from dsa_stream import instrument
from dsa_stream.config import Settings
from dsa_stream.registry import JobKind, JobSpec, Txn
from dsa_stream.registry.models import groups, jobs, mosaic_windows, products
from dsa_stream.registry.states import ProductKind, QaStatus

logger = logging.getLogger(__name__)

#: Groups within this of the imaged group are planned together (built windows farther
#: away are pinned, so the layout near the horizon never moves a built window).
PLAN_HORIZON = timedelta(hours=24)
#: Group states that take no further part in mosaics.
_EXCLUDED = ("quarantined", "failed")


def image_identity(product_id: int) -> str:
    """The planner's identity of an image product."""
    return f"image:{product_id}"


def _group_records(conn: Connection, t0: datetime, t1: datetime) -> list[Any]:
    from dsa_stream.mosaic.planner import GroupRecord

    rows = conn.execute(
        select(groups.c.id, groups.c.group_key, groups.c.obs_time, groups.c.dec_deg)
        .where(
            groups.c.obs_time >= t0,
            groups.c.obs_time <= t1,
            groups.c.state.not_in(_EXCLUDED),
            groups.c.dec_deg.is_not(None),
        )
        .order_by(groups.c.obs_time)
    ).all()
    if not rows:
        return []
    images: dict[int, Any] = {}
    for img in conn.execute(
        select(
            products.c.id,
            products.c.group_id,
            products.c.qa_status,
            products.c.obs_start,
            products.c.obs_end,
        )
        .where(
            products.c.kind == str(ProductKind.IMAGE),
            products.c.group_id.in_([r.id for r in rows]),
            products.c.state.not_in(("superseded", "cleaned")),
        )
        .order_by(products.c.version)
    ):
        images[img.group_id] = img  # newest version wins
    out = []
    for r in rows:
        img = images.get(r.id)
        start = img.obs_start if img is not None else r.obs_time
        end = (
            img.obs_end
            if img is not None and img.obs_end > img.obs_start
            else start + timedelta(seconds=instrument.OBSERVATION_S)
        )
        out.append(
            GroupRecord(
                group_key=r.group_key,
                obs_start=start,
                obs_end=end,
                dec_deg=float(r.dec_deg),
                imaged=img is not None,
                qa_passed=img is not None and img.qa_status == str(QaStatus.PASSED),
                image_id=image_identity(img.id) if img is not None else None,
            )
        )
    return out


def _previous(conn: Connection, t0: datetime, t1: datetime) -> list[Any]:
    from dsa_stream.mosaic.planner import MemberRef, PreviousWindow

    rows = conn.execute(
        select(mosaic_windows).where(
            mosaic_windows.c.obs_end >= t0, mosaic_windows.c.obs_start <= t1
        )
    ).all()
    return [
        PreviousWindow(
            window_key=r.window_key,
            version=r.version,
            built_version=r.built_version,
            members=tuple(MemberRef(**m) for m in (r.members or [])),
        )
        for r in rows
    ]


def mosaic_job(window: Any, window_id: int) -> JobSpec:
    """The ``mosaic`` job of a ready window version."""
    members = [{"group_key": m.group_key, "image_id": m.image_id} for m in window.members]
    return JobSpec(
        kind=JobKind.MOSAIC,
        dedupe_key=f"mosaic:{window.window_key}:v{window.version}",
        order_key=window.obs_start,
        window_id=window_id,
        payload={
            "window_key": window.window_key,
            "version": window.version,
            "members": members,
            "changes": list(window.changes),
        },
    )


def _upsert(txn: Txn, window: Any) -> int:
    row = dict(window.registry_row())
    existing = txn.conn.execute(
        select(mosaic_windows.c.id, mosaic_windows.c.state).where(
            mosaic_windows.c.window_key == window.window_key
        )
    ).first()
    if existing is None:
        return int(
            txn.conn.execute(
                insert(mosaic_windows)
                .values(**row, created_at=txn.now, updated_at=txn.now)
                .returning(mosaic_windows.c.id)
            ).scalar_one()
        )
    if existing.state == "mosaicking" and row["state"] == "ready":
        row["state"] = "mosaicking"  # its job is queued or running
    txn.conn.execute(
        update(mosaic_windows)
        .where(mosaic_windows.c.id == existing.id)
        .values(**row, updated_at=txn.now)
    )
    return int(existing.id)


def plan_and_enqueue(txn: Txn, settings: Settings, around: datetime) -> list[str]:
    """Plan the windows near ``around``, store them and enqueue ready ones.

    Returns the dedupe keys of the mosaic jobs enqueued (new ones only).
    """
    from dsa_stream.mosaic.planner import plan_windows

    t0, t1 = around - PLAN_HORIZON, around + PLAN_HORIZON
    records = _group_records(txn.conn, t0, t1)
    if not records:
        return []
    plan = plan_windows(records, settings.mosaic.planner, _previous(txn.conn, t0, t1))
    enqueued = []
    for window in plan.windows:
        window_id = _upsert(txn, window)
        if window.status != "ready":
            continue
        spec = mosaic_job(window, window_id)
        if _dead(txn.conn, spec.dedupe_key):
            logger.warning("mosaic %s is dead; an operator retry rebuilds it", spec.dedupe_key)
            continue
        res = txn.enqueue(spec)
        txn.conn.execute(
            update(mosaic_windows)
            .where(mosaic_windows.c.id == window_id)
            .values(state="mosaicking", updated_at=txn.now)
        )
        if res.created:
            enqueued.append(spec.dedupe_key)
            logger.info(
                "mosaic window %s v%d ready (%d members)%s",
                window.window_key,
                window.version,
                window.n_members,
                f": {'; '.join(window.changes)}" if window.changes else "",
            )
    for gone in plan.obsolete:
        if gone.built_version is None:
            _drop_unbuilt(txn, gone.window_key)
        else:
            txn.conn.execute(
                update(mosaic_windows)
                .where(mosaic_windows.c.window_key == gone.window_key)
                .values(state="stale", updated_at=txn.now)
            )
            logger.warning("mosaic window %s is stale: %s", gone.window_key, gone.reason)
    return enqueued


def _dead(conn: Connection, dedupe_key: str) -> bool:
    """True when a job with this key ended dead (it is not re-enqueued automatically)."""
    row = conn.execute(
        select(jobs.c.id).where(jobs.c.dedupe_key == dedupe_key, jobs.c.state == "dead").limit(1)
    ).first()
    return row is not None


def _drop_unbuilt(txn: Txn, window_key: str) -> None:
    """Remove a never-built window re-tiled away (unless a job still refers to it)."""
    row = txn.conn.execute(
        select(mosaic_windows.c.id).where(mosaic_windows.c.window_key == window_key)
    ).first()
    if row is None:
        return
    referenced = txn.conn.execute(select(jobs.c.id).where(jobs.c.window_id == row.id)).first()
    if referenced is None:
        txn.conn.execute(delete(mosaic_windows).where(mosaic_windows.c.id == row.id))
    else:
        txn.conn.execute(
            update(mosaic_windows)
            .where(mosaic_windows.c.id == row.id)
            .values(state="stale", updated_at=txn.now)
        )


def mark_built(txn: Txn, window_id: int, version: int, members: list[dict[str, Any]]) -> None:
    """Record that version ``version`` of a window was built from ``members``."""
    txn.conn.execute(
        update(mosaic_windows)
        .where(
            and_(
                mosaic_windows.c.id == window_id,
                (mosaic_windows.c.built_version.is_(None))
                | (mosaic_windows.c.built_version < version),
            )
        )
        .values(built_version=version, members=members, state="done", updated_at=txn.now)
    )
