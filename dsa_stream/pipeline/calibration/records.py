"""Calibration table sets in the registry: register, find, list; manual (CLI) runs.

See :mod:`dsa_stream.pipeline.calibration` for the layout of a registered set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, func, select, update

from dsa_stream import naming
from dsa_stream.calibration.observation import GroupObservation
from dsa_stream.calibration.options import SelectionOptions
from dsa_stream.calibration.solve import SolveResult
from dsa_stream.calibration.validity import (
    CalSetCandidate,
    CalTableRecord,
    Selection,
    ValidityWindow,
    select_table_set,
)
from dsa_stream.config import Settings
from dsa_stream.exceptions import RegistryError
from dsa_stream.registry import JobKind, JobSpec, JobState, ProductSpec, Txn
from dsa_stream.registry.models import calibrations, groups, jobs, products
from dsa_stream.registry.states import CalibrationStatus, JobEvent, ProductKind

logger = logging.getLogger(__name__)

#: Table types registered per set, in apply order.
REGISTERED_TYPES = ("bandpass", "gain")


def caltables_dir(settings: Settings) -> Path:
    """Where solved sets are written: ``<products>/caltables``."""
    return settings.paths.resolve("products") / naming.CALTABLES_DIRNAME


class CalRecord(BaseModel):
    """What a ``calibrations`` row's JSON column holds about its table and set."""

    model_config = ConfigDict(frozen=True, extra="allow")

    set_name: str
    version: int
    table_type: str
    transit: datetime
    source_group: str
    refant: str
    refant_candidates: tuple[str, ...]
    qa_passed: bool
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    metrics: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    software: dict[str, str | None] = {}
    record: str = ""
    """Path of the set's ``calibration.json`` (root id : relative path)."""


class RegisteredSet(BaseModel):
    """What :func:`register_solution` wrote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    set_name: str
    version: int
    status: str
    product_ids: dict[str, int]
    calibration_ids: dict[str, int]
    superseded: int
    """Calibration rows of older versions that were superseded."""


class Roots(BaseModel):
    """Site roots by id (the pipeline context's ``roots``)."""

    model_config = ConfigDict(frozen=True)

    roots: dict[str, Path]

    def split(self, path: Path) -> tuple[str, str]:
        """(root id, relative path) of an absolute path under a root."""
        p = Path(path).resolve()
        for root_id, root in sorted(self.roots.items(), key=lambda kv: -len(str(kv[1]))):
            try:
                return root_id, str(p.relative_to(Path(root).resolve()))
            except ValueError:
                continue
        raise RegistryError(
            f"{path} is under none of the site roots ({', '.join(self.roots)}); "
            "solve into the site (default <products>/caltables) to register"
        )

    def join(self, root_id: str, rel_path: str) -> Path:
        """Absolute path of a registry (root id, relative path) pair."""
        if root_id not in self.roots:
            raise RegistryError(f"unknown root id {root_id!r}")
        return Path(self.roots[root_id]) / rel_path

    @classmethod
    def of(cls, settings: Settings) -> Roots:
        """The roots of a site's configuration."""
        names = ("incoming", "staging", "products", "quarantine", "logs")
        return cls(roots={n: settings.paths.resolve(n) for n in names})  # type: ignore[arg-type]


def next_version(txn: Txn, set_name: str) -> int:
    """The next version of a set name (1 for a set never registered)."""
    current = txn.conn.execute(
        select(func.max(products.c.version)).where(
            products.c.kind == str(ProductKind.CALTABLE),
            products.c.logical_key.like(f"caltable:{set_name}:%"),
        )
    ).scalar_one_or_none()
    return int(current or 0) + 1


def _supersede(txn: Txn, set_name: str, version: int) -> int:
    older = select(products.c.id).where(
        products.c.kind == str(ProductKind.CALTABLE),
        products.c.logical_key.like(f"caltable:{set_name}:%"),
        products.c.version < version,
    )
    result = txn.conn.execute(
        update(calibrations)
        .where(
            calibrations.c.product_id.in_(older),
            calibrations.c.status == str(CalibrationStatus.VALID),
        )
        .values(status=str(CalibrationStatus.SUPERSEDED), updated_at=txn.now)
    )
    return int(result.rowcount or 0)


def _record(result: SolveResult, version: int, table_type: str, record: str) -> dict[str, Any]:
    qa = result.qa
    metrics = qa.model_dump(mode="json", exclude={"antennas", "passed", "problems", "warnings"})
    metrics["antennas"] = [a.model_dump(mode="json") for a in qa.antennas]
    metrics["flagging"] = result.flagging.model_dump(mode="json")
    metrics["model"] = result.model.model_dump(mode="json")
    return CalRecord(
        set_name=result.set_name,
        version=version,
        table_type=table_type,
        transit=result.transit,
        source_group=result.group_key,
        refant=result.refant,
        refant_candidates=result.refant_candidates,
        qa_passed=qa.passed,
        problems=qa.problems,
        warnings=qa.warnings,
        metrics=metrics,
        parameters=result.parameters.model_dump(mode="json"),
        software=result.software,
        record=record,
    ).model_dump(mode="json")


def group_id_of(conn: Connection, group_key: str) -> int | None:
    """The registry id of a group key, if the group is registered."""
    row = conn.execute(select(groups.c.id).where(groups.c.group_key == group_key)).first()
    return int(row.id) if row is not None else None


def register_solution(
    txn: Txn,
    result: SolveResult,
    roots: Roots,
    *,
    job_id: int,
    lease_token: int,
) -> RegisteredSet:
    """Register the bandpass and gain tables of a solved set (module docstring).

    Raises:
        RegistryError: if a table is outside the site roots or lacks a window.
    """
    from dsa_stream.products.manifest import build_manifest

    version = next_version(txn, result.set_name)
    status = CalibrationStatus.VALID if result.passed else CalibrationStatus.REJECTED
    record_root, record_rel = roots.split(result.ms_path.parent / naming.CALSET_RECORD_FILENAME)
    group_id = group_id_of(txn.conn, result.group_key)
    product_ids: dict[str, int] = {}
    calibration_ids: dict[str, int] = {}
    superseded = _supersede(txn, result.set_name, version)
    for kind in REGISTERED_TYPES:
        table = result.table(kind)
        if table.window is None:
            raise RegistryError(f"{table.path}: no validity window")
        root_id, rel = roots.split(table.path)
        pid = txn.add_product(
            ProductSpec(
                kind=str(ProductKind.CALTABLE),
                logical_key=f"caltable:{result.set_name}:{kind}",
                version=version,
                root_id=root_id,
                rel_path=rel,
                manifest_hash=build_manifest(table.path).digest(),
                obs_start=result.obs_start,
                obs_end=result.obs_end,
                group_id=group_id,
            ),
            job_id=job_id,
            lease_token=lease_token,
        )
        product_ids[kind] = pid
        calibration_ids[kind] = txn.add_calibration(
            pid,
            valid_from_obs=table.window.valid_from,
            valid_to_obs=table.window.valid_to,
            dec_deg=result.dec_deg,
            status=status,
            calibrator=result.calibrator.name,
            qa=_record(result, version, kind, f"{record_root}:{record_rel}"),
        )
    if product_ids.get("bandpass") and product_ids.get("gain"):
        txn.link_products(product_ids["bandpass"], product_ids["gain"], relation="solved_with")
    logger.info(
        "registered calibration set %s v%d (%s): windows %s .. %s, Dec %.3f",
        result.set_name,
        version,
        status,
        result.table("bandpass").window.valid_from.isoformat(),  # type: ignore[union-attr]
        result.table("bandpass").window.valid_to.isoformat(),  # type: ignore[union-attr]
        result.dec_deg,
    )
    return RegisteredSet(
        set_name=result.set_name,
        version=version,
        status=str(status),
        product_ids=product_ids,
        calibration_ids=calibration_ids,
        superseded=superseded,
    )


# -- finding sets ---------------------------------------------------------------------------


_CAL_COLS = (
    calibrations.c.id.label("calibration_id"),
    calibrations.c.product_id,
    calibrations.c.valid_from_obs,
    calibrations.c.valid_to_obs,
    calibrations.c.dec_deg,
    calibrations.c.calibrator,
    calibrations.c.status,
    calibrations.c.qa,
    calibrations.c.created_at,
    products.c.root_id,
    products.c.rel_path,
    products.c.version,
)


def _candidates_from_rows(rows: Sequence[Any], roots: Roots) -> list[CalSetCandidate]:
    sets: dict[tuple[str, int], list[Any]] = {}
    for row in rows:
        rec = CalRecord.model_validate(row.qa or {})
        sets.setdefault((rec.set_name, rec.version), []).append((row, rec))
    out = []
    for (name, version), members in sorted(sets.items()):
        row0, rec0 = members[0]
        tables = tuple(
            CalTableRecord(
                table_type=rec.table_type,  # type: ignore[arg-type]
                path=roots.join(row.root_id, row.rel_path),
                window=ValidityWindow(valid_from=row.valid_from_obs, valid_to=row.valid_to_obs),
                status=row.status,
                calibration_id=row.calibration_id,
                product_id=row.product_id,
            )
            for row, rec in members
        )
        out.append(
            CalSetCandidate(
                set_name=name,
                version=version,
                calibrator=row0.calibrator or "",
                dec_deg=float(row0.dec_deg) if row0.dec_deg is not None else float("nan"),
                transit=rec0.transit,
                tables=tables,
                created_at=min(r.created_at for r, _ in members),
            )
        )
    return out


#: Longest half width of a validity window (ValidityOptions allows up to 72 h).
MAX_WINDOW = timedelta(hours=72)


def load_candidates(
    conn: Connection,
    obs_time: datetime,
    roots: Roots,
    *,
    dec_deg: float | None = None,
    dec_window: float = 10.0,
) -> list[CalSetCandidate]:
    """Every registered set (any status) with a table whose window contains ``obs_time``.

    All tables of such a set are returned, also those whose own window does not cover
    ``obs_time``, so that the selection can say which one is missing. ``dec_deg``
    narrows the query to sets solved within ``dec_window`` deg (the exact tolerance is
    applied by the selection, which reports what it rejected).
    """
    query = (
        select(*_CAL_COLS)
        .join(products, products.c.id == calibrations.c.product_id)
        .where(
            calibrations.c.valid_from_obs <= obs_time + 2 * MAX_WINDOW,
            calibrations.c.valid_to_obs >= obs_time - 2 * MAX_WINDOW,
        )
        .order_by(calibrations.c.id)
    )
    if dec_deg is not None:
        query = query.where(
            calibrations.c.dec_deg.between(dec_deg - dec_window, dec_deg + dec_window)
        )
    sets = _candidates_from_rows(conn.execute(query).all(), roots)
    return [c for c in sets if any(t.window.covers(obs_time) for t in c.tables)]


def list_sets(
    conn: Connection,
    roots: Roots,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    limit: int = 200,
) -> list[CalSetCandidate]:
    """Registered sets, latest transit first (``since``/``until`` on the transit's window)."""
    query = select(*_CAL_COLS).join(products, products.c.id == calibrations.c.product_id)
    if since is not None:
        query = query.where(calibrations.c.valid_to_obs >= since)
    if until is not None:
        query = query.where(calibrations.c.valid_from_obs < until)
    if status:
        query = query.where(calibrations.c.status == status)
    sets = _candidates_from_rows(conn.execute(query.order_by(calibrations.c.id)).all(), roots)
    sets.sort(key=lambda c: (c.transit, c.set_name, c.version), reverse=True)
    return sets[:limit]


def candidate_from_result(result: SolveResult) -> CalSetCandidate:
    """A just-solved (not yet registered) set as a selection candidate."""
    status = str(CalibrationStatus.VALID if result.passed else CalibrationStatus.REJECTED)
    return CalSetCandidate(
        set_name=result.set_name,
        calibrator=result.calibrator.name,
        dec_deg=result.dec_deg,
        transit=result.transit,
        tables=tuple(
            CalTableRecord(
                table_type=kind,  # type: ignore[arg-type]
                path=result.table(kind).path,
                window=result.table(kind).window,  # type: ignore[arg-type]
                status=status,
            )
            for kind in REGISTERED_TYPES
        ),
    )


def select_for_observation(
    conn: Connection,
    obs: GroupObservation,
    roots: Roots,
    opts: SelectionOptions,
    extra: Sequence[CalSetCandidate] = (),
) -> Selection:
    """Choose a set for a group from the registry (plus ``extra`` unregistered ones)."""
    cands = load_candidates(conn, obs.mid, roots, dec_deg=obs.pointing_dec_deg)
    known = {(c.set_name, c.version) for c in cands}
    cands += [c for c in extra if (c.set_name, c.version) not in known]
    selection = select_table_set(cands, obs.mid, obs.pointing_dec_deg, opts)
    logger.info("calibration for %s: %s", obs.mid.isoformat(), selection.reason)
    return selection


# -- manual runs (CLI) -----------------------------------------------------------------------------


def manual_job(
    txn: Txn, *, dedupe_key: str, order_key: datetime, group_id: int | None, detail: str
) -> tuple[int, int]:
    """Record a command-line run as a succeeded ``calibrate`` job; return (job id, token).

    Products must belong to a job; a manual solve is recorded as a job that was
    enqueued, run and succeeded in this one transaction, with its audit events.
    """
    got = txn.enqueue(
        JobSpec(
            kind=JobKind.CALIBRATE, dedupe_key=dedupe_key, order_key=order_key, group_id=group_id
        )
    )
    if not got.created:
        raise RegistryError(f"a job with key {dedupe_key!r} already exists (job {got.job_id})")
    token = 1
    txn.conn.execute(
        update(jobs)
        .where(jobs.c.id == got.job_id)
        .values(state=str(JobState.RUNNING), attempt=1, lease_token=token, heartbeat_at=txn.now)
    )
    txn.event(
        got.job_id,
        JobEvent.CLAIMED,
        JobState.QUEUED,
        JobState.RUNNING,
        lease_token=token,
        attempt=1,
        detail=detail,
    )
    txn.conn.execute(
        update(jobs)
        .where(jobs.c.id == got.job_id)
        .values(state=str(JobState.SUCCEEDED), finished_at=txn.now, updated_at=txn.now)
    )
    txn.event(
        got.job_id,
        JobEvent.SUCCEEDED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
        lease_token=token,
        attempt=1,
        detail=detail,
    )
    return got.job_id, token
