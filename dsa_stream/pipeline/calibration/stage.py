"""The ``calibrate`` stage of the worker, and groups waiting for calibration.

See :mod:`dsa_stream.pipeline.calibration` for the states a group goes through.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, and_, select

from dsa_stream import instrument
from dsa_stream.calibration.options import (
    SelectionOptions,
    apply_options,
    selection_options,
    solve_options,
)
from dsa_stream.calibration.solve import SolveResult
from dsa_stream.calibration.validity import CalSetCandidate, Decision, decide, select_table_set
from dsa_stream.config import Settings
from dsa_stream.exceptions import RegistryError
from dsa_stream.pipeline.calibration.records import (
    Roots,
    caltables_dir,
    candidate_from_result,
    register_solution,
    select_for_observation,
)
from dsa_stream.registry import GroupState, JobKind, JobSpec, Txn
from dsa_stream.registry.models import groups, products
from dsa_stream.registry.states import CalibrationStatus, ProductKind

logger = logging.getLogger(__name__)

#: Group stage of a group that waits for a valid table set (state ``processing``).
AWAITING_CALIBRATION = "awaiting_calibration"
#: Group stage of a group imaged without calibration (policy ``image-uncalibrated``).
UNCALIBRATED = "uncalibrated"
#: Group stage once calibration is applied.
CALIBRATED = "calibrated"
#: Group stage of a waiting group for which a set was registered (calibrate job queued).
CALIBRATION_AVAILABLE = "calibration_available"


def calibrate_job(
    group_id: int, group_key: str, obs_time: datetime, reason: str, suffix: str = ""
) -> JobSpec:
    """The calibrate job of a group (``suffix`` makes a re-run after waiting unique)."""
    key = f"calibrate:{group_key}" + (f":{suffix}" if suffix else "")
    return JobSpec(
        kind=JobKind.CALIBRATE,
        dedupe_key=key[:255],
        order_key=obs_time,
        group_id=group_id,
        payload={"group_key": group_key, "reason": reason},
    )


def release_waiting_groups(
    txn: Txn, candidate: CalSetCandidate, opts: SelectionOptions, *, version: int = 1
) -> list[str]:
    """Re-enqueue a calibrate job for every waiting group the new set covers.

    A group's observation time here is its start plus half a group (the middle, as the
    selection uses); its Dec is the registry's (from the file headers).
    """
    rows = txn.conn.execute(
        select(groups.c.id, groups.c.group_key, groups.c.obs_time, groups.c.dec_deg).where(
            and_(
                groups.c.state == str(GroupState.PROCESSING), groups.c.stage == AWAITING_CALIBRATION
            )
        )
    ).all()
    half = timedelta(seconds=0.5 * instrument.OBSERVATION_S)
    released = []
    for row in rows:
        dec = row.dec_deg if row.dec_deg is not None else candidate.dec_deg
        sel = select_table_set([candidate], row.obs_time + half, dec, opts)
        if sel.chosen is None:
            continue
        txn.enqueue(
            calibrate_job(
                row.id,
                row.group_key,
                row.obs_time,
                f"calibration {candidate.set_name} v{version} available",
                suffix=f"{candidate.set_name}:v{version}",
            )
        )
        txn.set_group_state(
            row.id,
            GroupState.PROCESSING,
            stage=CALIBRATION_AVAILABLE,
            reason=f"{candidate.set_name} v{version} covers it; calibrate job queued",
        )
        released.append(row.group_key)
    if released:
        logger.info("released %d waiting group(s): %s", len(released), ", ".join(released))
    return released


def waiting_groups(conn: Connection) -> list[tuple[str, datetime, str | None]]:
    """Groups waiting for calibration: (group key, observation time, reason)."""
    rows = conn.execute(
        select(groups.c.group_key, groups.c.obs_time, groups.c.reason)
        .where(groups.c.state == str(GroupState.PROCESSING), groups.c.stage == AWAITING_CALIBRATION)
        .order_by(groups.c.obs_time)
    ).all()
    return [(r.group_key, r.obs_time, r.reason) for r in rows]


class GroupInputs(BaseModel):
    """A group as the registry knows it: key, times, its MS and its files."""

    model_config = ConfigDict(frozen=True)

    group_id: int
    group_key: str
    obs_time: datetime
    ms_path: Path | None
    ms_product_id: int | None
    files: tuple[Path, ...]


def group_inputs(conn: Connection, roots: Roots, group_id: int) -> GroupInputs:
    """The group's row, its newest MS product and its valid input files."""
    from dsa_stream.registry.models import input_files

    row = conn.execute(
        select(groups.c.group_key, groups.c.obs_time).where(groups.c.id == group_id)
    ).first()
    if row is None:
        raise RegistryError(f"no group with id {group_id}")
    ms = conn.execute(
        select(products.c.id, products.c.root_id, products.c.rel_path)
        .where(products.c.group_id == group_id, products.c.kind == str(ProductKind.MS))
        .order_by(products.c.version.desc(), products.c.id.desc())
        .limit(1)
    ).first()
    files = conn.execute(
        select(input_files.c.root_id, input_files.c.rel_path)
        .where(
            input_files.c.group_id == group_id, input_files.c.state.in_(["registered", "consumed"])
        )
        .order_by(input_files.c.subband)
    ).all()
    return GroupInputs(
        group_id=group_id,
        group_key=row.group_key,
        obs_time=row.obs_time,
        ms_path=roots.join(ms.root_id, ms.rel_path) if ms is not None else None,
        ms_product_id=int(ms.id) if ms is not None else None,
        files=tuple(roots.join(f.root_id, f.rel_path) for f in files),
    )


def already_solved(conn: Connection, group_key: str) -> bool:
    """True when a set solved on this group is registered (any status)."""
    row = conn.execute(
        select(products.c.id)
        .where(
            products.c.kind == str(ProductKind.CALTABLE),
            products.c.logical_key.like(f"caltable:{group_key}_%"),
        )
        .limit(1)
    ).first()
    return row is not None


def image_job(inputs: GroupInputs, roots: Roots, decision: Decision) -> JobSpec:
    """The image job that follows calibration (or the uncalibrated policy)."""
    payload: dict[str, Any] = {
        "group_key": inputs.group_key,
        "data_column": decision.data_column,
        "calibrated": decision.action == CALIBRATED,
    }
    if inputs.ms_path is not None:
        root_id, rel = roots.split(inputs.ms_path)
        payload["ms"] = {"root_id": root_id, "rel_path": rel}
    chosen = decision.selection.chosen if decision.selection is not None else None
    if chosen is not None:
        payload["calibration_set"] = chosen.set_name
        payload["calibration_version"] = chosen.version
        payload["calibration_tables"] = [str(p) for p in chosen.apply_order()]
    return JobSpec(
        kind=JobKind.IMAGE,
        dedupe_key=f"image:{inputs.group_key}",
        order_key=inputs.obs_time,
        group_id=inputs.group_id,
        payload=payload,
    )


def _commit_callback(
    *,
    solved: SolveResult | None,
    decision: Decision,
    inputs: GroupInputs,
    roots: Roots,
    opts: SelectionOptions,
    job_id: int,
    lease_token: int,
) -> Any:
    """The writes of the completion transaction: register, release waiting, lineage."""

    def commit(txn: Txn) -> None:
        new_ids: dict[str, int] = {}
        if solved is not None:
            reg = register_solution(txn, solved, roots, job_id=job_id, lease_token=lease_token)
            new_ids = reg.product_ids
            if reg.status == str(CalibrationStatus.VALID):
                release_waiting_groups(
                    txn, candidate_from_result(solved), opts, version=reg.version
                )
        chosen = decision.selection.chosen if decision.selection is not None else None
        if decision.action != CALIBRATED or chosen is None or inputs.ms_product_id is None:
            return
        for table in chosen.tables:
            pid = table.product_id or new_ids.get(table.table_type)
            if pid is not None:
                txn.link_products(pid, inputs.ms_product_id, relation="calibration")

    return commit


def calibrate_group(
    settings: Settings,
    conn_factory: Any,
    inputs: GroupInputs,
    roots: Roots,
    *,
    cancel: Any = None,
) -> tuple[Decision, SolveResult | None]:
    """Solve (on a calibrator group), choose a set and apply it to the group's MS.

    ``conn_factory`` opens a read connection (``engine.connect``). Returns the decision
    and the solve result (None when the group is not a calibrator group or was solved
    before).

    Raises:
        ObservationTimeError: the group's time cannot be read (the caller quarantines).
    """
    from dsa_stream.calibration.apply import apply_to_ms, read_provenance
    from dsa_stream.calibration.observation import read_observation
    from dsa_stream.calibration.solve import solve_group
    from dsa_stream.calibration.transits import find_transits

    cfg = settings.calibrate
    sel_opts = selection_options(cfg)
    obs = read_observation([inputs.ms_path] if inputs.ms_path is not None else list(inputs.files))
    opts = solve_options(cfg)
    solved = None
    with conn_factory() as conn:
        solved_before = already_solved(conn, inputs.group_key)
    if not solved_before and find_transits(obs, opts.transit).is_calibrator_group:
        solve_inputs = list(inputs.files) if inputs.files else [inputs.ms_path]
        solved = solve_group(solve_inputs, caltables_dir(settings), opts, cancel=cancel)
    extra = [candidate_from_result(solved)] if solved is not None and solved.passed else []
    with conn_factory() as conn:
        selection = select_for_observation(conn, obs, roots, sel_opts, extra)
    decision = decide(selection, sel_opts)
    if decision.action == CALIBRATED and inputs.ms_path is not None:
        done = read_provenance(inputs.ms_path) or {}
        if [str(p) for p in selection.tables] == [str(p) for p in done.get("tables", [])]:
            column = str(done.get("data_column", "DATA"))
        else:
            applied = apply_to_ms(
                inputs.ms_path,
                selection.tables,
                apply_options(cfg),
                set_name=selection.chosen.set_name,  # type: ignore[union-attr]
                observation=obs,
                cancel=cancel,
            )
            column = applied.data_column
        decision = decision.model_copy(update={"data_column": column})
    return decision, solved


def calibrate_handler(ctx: Any, run: Any) -> Any:
    """The worker's handler of ``calibrate`` jobs (see the module docstring).

    Args:
        ctx: The :class:`~dsa_stream.pipeline.context.PipelineContext`.
        run: The :class:`~dsa_stream.pipeline.context.StageRun` of the claim.
    """
    from dsa_stream.calibration.observation import ObservationTimeError
    from dsa_stream.pipeline.context import StageOutcome
    from dsa_stream.registry import GroupUpdate

    claim = run.claim
    if claim.group_id is None:
        raise RegistryError(f"calibrate job {claim.job_id} has no group")
    roots = Roots(roots=dict(ctx.roots))
    with ctx.store.engine.connect() as conn:
        inputs = group_inputs(conn, roots, claim.group_id)
    try:
        decision, solved = calibrate_group(
            ctx.settings, ctx.store.engine.connect, inputs, roots, cancel=run.cancel
        )
    except ObservationTimeError as exc:
        logger.error("group %s quarantined: %s", inputs.group_key, exc)
        return StageOutcome(
            group_update=GroupUpdate(
                group_id=inputs.group_id,
                state=GroupState.QUARANTINED,
                stage="calibrate",
                reason=str(exc),
            ),
            detail=f"quarantined: {exc}",
        )
    log = logger.warning if decision.action == AWAITING_CALIBRATION else logger.info
    log("group %s: %s (%s)", inputs.group_key, decision.action, decision.reason)
    sel_opts = selection_options(ctx.settings.calibrate)
    return StageOutcome(
        next_jobs=()
        if decision.action == AWAITING_CALIBRATION
        else (image_job(inputs, roots, decision),),
        group_update=GroupUpdate(
            group_id=inputs.group_id,
            state=GroupState.PROCESSING,
            stage=decision.action,
            reason=decision.reason,
        ),
        in_transaction=_commit_callback(
            solved=solved,
            decision=decision,
            inputs=inputs,
            roots=roots,
            opts=sel_opts,
            job_id=claim.job_id,
            lease_token=claim.lease_token,
        ),
        detail=f"{decision.action}: {decision.reason}"[:1000],
    )


def register_manual(store: Any, result: SolveResult, roots: Roots, settings: Settings) -> Any:
    """Register a set solved outside the worker (``dsa-stream calibrate solve``).

    One transaction: a succeeded ``calibrate`` job records the run, the tables are
    registered under it, and waiting groups the set covers are released.
    """
    from dsa_stream.pipeline.calibration.records import group_id_of, manual_job, next_version

    with store.transaction() as txn:
        version = next_version(txn, result.set_name)
        job_id, token = manual_job(
            txn,
            dedupe_key=f"calibrate:manual:{result.set_name}:v{version}",
            order_key=result.obs_start,
            group_id=group_id_of(txn.conn, result.group_key),
            detail=f"dsa-stream calibrate solve: set {result.set_name} v{version}",
        )
        reg = register_solution(txn, result, roots, job_id=job_id, lease_token=token)
        if reg.status == str(CalibrationStatus.VALID):
            release_waiting_groups(
                txn,
                candidate_from_result(result),
                selection_options(settings.calibrate),
                version=reg.version,
            )
    return reg
