"""``run-first-mosaic``: the first 10 consecutive complete groups of a directory -> a mosaic.

Steps: read every subband file's header in INPUT_DIR (observation time, Dec, subband;
nothing is trusted from file names or arrival order); keep complete groups (16
distinct valid subbands); let the mosaic planner pick the first window of consecutive
groups (its rules: neighbours < 6 min apart, span <= 60 min, same Dec); make sure
calibration will exist (a calibrator transit among them, else the nearest calibrator
group of the directory within the validity window is added, else valid registered
tables, else the uncalibrated policy); hard-link (or copy) those files into the site's
``incoming`` directory; reconcile the site (a rerun checks earlier outputs and redoes
invalid ones); register them (one ingest pass) and run the sequential worker until
nothing is left: convert -> calibrate -> image -> mosaic -> finalize/publish.

Rerunning it does no new work when every output is valid.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from dsa_stream import instrument, naming
from dsa_stream.config import Settings
from dsa_stream.exceptions import DsaStreamError, InputFileError
from dsa_stream.pipeline.context import PipelineContext
from dsa_stream.registry import JobStore
from dsa_stream.registry.models import calibrations, groups, job_events, jobs, products

logger = logging.getLogger(__name__)

#: Exit statuses of ``run-first-mosaic``.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NO_WINDOW = 3
EXIT_NO_CALIBRATION = 4
EXIT_STAGE_FAILED = 5
EXIT_NOT_PUBLISHED = 6

#: The stages shown, in pipeline order.
STAGES = ("convert", "calibrate", "image", "mosaic", "publish")


class FirstMosaicError(DsaStreamError):
    """run-first-mosaic cannot go on; ``exit_code`` says why."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InputGroup(BaseModel):
    """One group of the input directory, from its files' headers."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    group_key: str
    obs_start: datetime
    dec_deg: float
    files: dict[int, Path]
    """Subband -> file (the first valid one of each subband)."""
    problems: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """All 16 subbands present and valid."""
        return len(self.files) == instrument.N_SUBBANDS and not self.problems


def scan_input(
    input_dir: Path, settings: Settings, tick: Callable[[int, int], None] | None = None
) -> tuple[list[InputGroup], list[str]]:
    """Groups of the directory (observation-time order) and the files that were not valid."""
    from dsa_stream.watcher.inspect import inspect_subband_file

    if not input_dir.is_dir():
        raise FirstMosaicError(f"input directory {input_dir} does not exist", EXIT_ERROR)
    names = sorted(p for p in input_dir.iterdir() if naming.is_subband_filename(p.name))
    by_key: dict[str, dict[str, Any]] = {}
    rejected = []
    for k, path in enumerate(names, start=1):
        try:
            info = inspect_subband_file(
                path,
                expected_times=settings.watcher.expected_integrations,
                filename_tolerance_s=settings.watcher.filename_tolerance_s,
                checksum=False,
            )
        except InputFileError as exc:
            rejected.append(f"{path.name}: {exc}")
        else:
            g = by_key.setdefault(
                info.group_key,
                {"start": info.obs_start, "dec": info.dec_deg, "files": {}, "problems": []},
            )
            if info.subband in g["files"]:
                g["problems"].append(f"duplicate subband {info.subband}: {path.name}")
            else:
                g["files"][info.subband] = path
        if tick is not None:
            tick(k, len(names))
    out = [
        InputGroup(
            group_key=key,
            obs_start=g["start"],
            dec_deg=g["dec"],
            files=dict(sorted(g["files"].items())),
            problems=tuple(g["problems"]),
        )
        for key, g in by_key.items()
    ]
    return sorted(out, key=lambda g: g.obs_start), rejected


def choose_window(found: list[InputGroup], settings: Settings) -> list[InputGroup]:
    """The members of the first window the planner makes of the complete groups."""
    from dsa_stream.mosaic.planner import GroupRecord, plan_windows

    complete = [g for g in found if g.complete]
    records = [
        GroupRecord(
            group_key=g.group_key,
            obs_start=g.obs_start,
            obs_end=g.obs_start + timedelta(seconds=instrument.OBSERVATION_S),
            dec_deg=g.dec_deg,
            imaged=True,
            qa_passed=True,
        )
        for g in complete
    ]
    plan = plan_windows(records, settings.mosaic.planner)
    ready = plan.ready()
    if not ready:
        size = settings.mosaic.planner.window_size
        raise FirstMosaicError(
            f"no {size} consecutive complete groups ({len(complete)} complete of "
            f"{len(found)} found; neighbours < {settings.mosaic.planner.max_gap_s:.0f} s apart, "
            f"span <= {settings.mosaic.planner.max_span_s:.0f} s, same Dec)",
            EXIT_NO_WINDOW,
        )
    by_key = {g.group_key: g for g in complete}
    return [by_key[m.group_key] for m in ready[0].members]


def _is_calibrator_group(group: InputGroup, settings: Settings) -> str | None:
    from dsa_stream.calibration.observation import read_observation
    from dsa_stream.calibration.options import solve_options
    from dsa_stream.calibration.transits import find_transits

    report = find_transits(
        read_observation(list(group.files.values())), solve_options(settings.calibrate).transit
    )
    return report.calibrator


def _registered_calibration(store: JobStore, when: datetime, dec: float, tol: float) -> bool:
    with store.engine.connect() as conn:
        n = conn.execute(
            select(func.count()).where(
                calibrations.c.status == "valid",
                calibrations.c.valid_from_obs <= when,
                calibrations.c.valid_to_obs >= when,
                func.abs(calibrations.c.dec_deg - dec) <= tol,
            )
        ).scalar_one()
    return n > 0


def calibration_plan(
    found: list[InputGroup], chosen: list[InputGroup], settings: Settings, store: JobStore
) -> tuple[InputGroup | None, str]:
    """An extra calibrator group to process (or None) and how the window gets calibrated."""
    cfg = settings.calibrate
    for g in chosen:
        name = _is_calibrator_group(g, settings)
        if name is not None:
            return None, f"{name} transits in group {g.group_key} (in the window)"
    mid = chosen[len(chosen) // 2].obs_start
    valid = timedelta(hours=min(cfg.bandpass_validity_hours, cfg.gain_validity_hours))
    others = [
        g
        for g in found
        if g.complete
        and g not in chosen
        and abs(g.obs_start - mid) <= valid
        and abs(g.dec_deg - chosen[0].dec_deg) <= cfg.dec_tolerance_deg
    ]
    for g in sorted(others, key=lambda g: abs(g.obs_start - mid)):
        name = _is_calibrator_group(g, settings)
        if name is not None:
            return g, f"{name} transits in group {g.group_key} (added to the run)"
    if _registered_calibration(store, mid, chosen[0].dec_deg, cfg.dec_tolerance_deg):
        return None, "valid calibration tables are registered for this time and Dec"
    if cfg.no_calibration_policy == "image-uncalibrated":
        return None, "no calibrator: imaged uncalibrated (calibrate.no_calibration_policy)"
    raise FirstMosaicError(
        "no calibrator transit in the window or within the validity window in the input "
        "directory, and no valid registered tables (set calibrate.no_calibration_policy: "
        "image-uncalibrated to image anyway)",
        EXIT_NO_CALIBRATION,
    )


def link_inputs(files: list[Path], incoming: Path) -> tuple[int, int]:
    """Hard-link (or, across filesystems, copy with its times) files into ``incoming``.

    Returns (linked, copied). A file already there (same content) is left alone.
    """
    incoming.mkdir(parents=True, exist_ok=True)
    linked = copied = 0
    for src in files:
        dest = incoming / src.name
        if dest.exists():
            s, d = src.stat(), dest.stat()
            if (s.st_ino, s.st_dev) == (d.st_ino, d.st_dev) or s.st_size == d.st_size:
                continue
            raise FirstMosaicError(f"{dest} exists and differs from {src}", EXIT_ERROR)
        try:
            os.link(src, dest)
            linked += 1
        except OSError:
            tmp = incoming / f".{src.name}.tmp"
            shutil.copy2(src, tmp)
            os.replace(tmp, dest)
            copied += 1
    return linked, copied


class StageTime(BaseModel):
    """Jobs of one stage and the time they took."""

    model_config = ConfigDict(frozen=True)

    stage: str
    succeeded: int
    failed: int
    seconds: float


class FirstMosaicSummary(BaseModel):
    """What a run did and where the results are."""

    model_config = ConfigDict(frozen=True)

    site: Path
    registry_url: str
    groups: tuple[str, ...]
    calibrator_group: str | None
    calibration: str
    jobs_run: int
    jobs_failed: int
    reconcile_fixed: int
    mosaic_key: str | None
    mosaic_version: int | None
    mosaic_state: str | None
    mosaic_path: Path | None
    preview_path: Path | None
    mosaic_qa: dict[str, Any] | None
    qa_status: str | None
    stages: tuple[StageTime, ...]
    dead_jobs: tuple[str, ...]
    seconds: float
    exit_code: int


def stage_times(store: JobStore, since_id: int = 0) -> list[StageTime]:
    """Per stage: succeeded and dead jobs, and the time of their successful attempts."""
    out = []
    with store.engine.connect() as conn:
        for stage in STAGES:
            ids = conn.execute(
                select(jobs.c.id, jobs.c.state).where(jobs.c.kind == stage, jobs.c.id > since_id)
            ).all()
            ok = [r.id for r in ids if r.state == "succeeded"]
            seconds = 0.0
            for job_id in ok:
                ev = conn.execute(
                    select(job_events.c.event, job_events.c.at)
                    .where(job_events.c.job_id == job_id)
                    .order_by(job_events.c.id)
                ).all()
                claims = [e.at for e in ev if e.event == "claimed"]
                ends = [e.at for e in ev if e.event == "succeeded"]
                if claims and ends:
                    seconds += (ends[-1] - claims[-1]).total_seconds()
            out.append(
                StageTime(
                    stage=stage,
                    succeeded=len(ok),
                    failed=sum(r.state == "dead" for r in ids),
                    seconds=round(seconds, 1),
                )
            )
    return out


def progress_counts(store: JobStore) -> dict[str, tuple[int, int]]:
    """Per stage: (finished jobs, all jobs) of the registry."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(jobs.c.kind, jobs.c.state, func.count()).group_by(jobs.c.kind, jobs.c.state)
        ).all()
    out = {s: (0, 0) for s in STAGES}
    for kind, state, n in rows:
        if kind in out:
            done, total = out[kind]
            terminal = state in ("succeeded", "dead", "cancelled")
            out[kind] = (done + (n if terminal else 0), total + n)
    return out


def _mosaic(store: JobStore, window_key: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(
            select(products)
            .where(products.c.kind == "mosaic", products.c.logical_key == f"mosaic:{window_key}")
            .order_by(products.c.version.desc())
            .limit(1)
        ).first()


def _dead_jobs(store: JobStore) -> list[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(jobs.c.id, jobs.c.dedupe_key, jobs.c.last_error).where(jobs.c.state == "dead")
        ).all()
    return [f"job {r.id} {r.dedupe_key}: {r.last_error}" for r in rows]


def _group_count(store: JobStore, keys: list[str]) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).where(groups.c.group_key.in_(keys))).scalar_one()
        )


def _drive(
    worker: Any,
    store: JobStore,
    on_progress: Callable[[dict[str, tuple[int, int]]], None] | None,
    note: Callable[[str], None],
    poll_s: float,
) -> Any:
    """Run the worker in burst mode in a thread; report progress from this one."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["report"] = worker.run(burst=True)
        except BaseException as exc:  # re-raised below, in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="first-mosaic-worker", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            if on_progress is not None:
                on_progress(progress_counts(store))
            thread.join(poll_s)
    except KeyboardInterrupt:
        note("interrupted: finishing the running stage (Ctrl-C again aborts it)")
        worker.request_stop()
        try:
            thread.join()
        except KeyboardInterrupt:
            worker.abort()
            thread.join()
        raise
    if on_progress is not None:
        on_progress(progress_counts(store))
    if "error" in box:
        raise box["error"]
    return box["report"]


def run_first_mosaic(
    input_dir: Path,
    settings: Settings,
    *,
    on_scan: Callable[[int, int], None] | None = None,
    on_progress: Callable[[dict[str, tuple[int, int]]], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    poll_s: float = 0.5,
) -> FirstMosaicSummary:
    """Run the whole chain on the first window of ``input_dir`` (module docstring).

    Raises:
        FirstMosaicError: no window, no calibration (with the exit code to use).
    """
    from dsa_stream.pipeline.handlers import default_handlers
    from dsa_stream.pipeline.reconcile import reconcile
    from dsa_stream.pipeline.worker import Worker
    from dsa_stream.registry import upgrade_registry
    from dsa_stream.watcher.ingest import ingest_once

    note = on_note or (lambda _m: None)
    t0 = time.monotonic()
    upgrade_registry(settings)
    found, rejected = scan_input(input_dir, settings, on_scan)
    for line in rejected:
        logger.warning("input file not used: %s", line)
    chosen = choose_window(found, settings)
    note(
        f"window: {len(chosen)} groups {chosen[0].group_key} .. {chosen[-1].group_key} "
        f"(Dec {chosen[0].dec_deg:.2f}); {len(found)} groups found, {len(rejected)} bad files"
    )
    store = JobStore.from_settings(settings)
    try:
        extra, how = calibration_plan(found, chosen, settings, store)
        note(f"calibration: {how}")
        run_groups = chosen + ([extra] if extra is not None else [])
        files = [p for g in run_groups for p in g.files.values()]
        linked, copied = link_inputs(files, settings.paths.resolve("incoming"))
        if linked or copied:
            note(f"inputs: {linked} files linked, {copied} copied into the site")
        ctx = PipelineContext.create(settings, store)
        fixed = reconcile(ctx, fix=True)
        n_fixed = sum(d.fixed for d in fixed.discrepancies)
        if n_fixed:
            note(f"reconcile repaired {n_fixed} discrepancies of an earlier run")
        with store.engine.connect() as conn:
            last_job = int(conn.execute(select(func.max(jobs.c.id))).scalar_one() or 0)
        # The files were validated above (complete headers and last integration):
        # no need to wait for them to settle as for a correlator still writing.
        settled = settings.watcher.model_copy(update={"settle_s": 0.0})
        ingest_once(settings.model_copy(update={"watcher": settled}), store=store)
        registered = _group_count(store, [g.group_key for g in run_groups])
        if registered < len(run_groups):
            raise FirstMosaicError(
                f"only {registered} of {len(run_groups)} groups were registered "
                "(see `dsa-stream registry files --state quarantined`)",
                EXIT_ERROR,
            )
        worker = Worker(ctx, default_handlers(), poll_s=0.2)
        report = _drive(worker, store, on_progress, note, poll_s)
        window_key = chosen[0].group_key
        mosaic = _mosaic(store, window_key)
        dead = _dead_jobs(store)
        code = EXIT_OK
        if dead:
            code = EXIT_STAGE_FAILED
        elif mosaic is None or mosaic.state != "published":
            code = EXIT_NOT_PUBLISHED
        path = preview = None
        if mosaic is not None:
            root, rel = (
                (mosaic.published_root_id, mosaic.published_rel_path)
                if mosaic.state == "published"
                else (mosaic.root_id, mosaic.rel_path)
            )
            path = ctx.path(root, rel)
            stem = naming.MosaicName(window_key, mosaic.version)
            preview = path / naming.mosaic_filename(stem, "preview")
            path = path / naming.mosaic_filename(stem, "image")
        return FirstMosaicSummary(
            site=settings.paths.root,
            registry_url=store.engine.url.render_as_string(hide_password=True),
            groups=tuple(g.group_key for g in chosen),
            calibrator_group=extra.group_key if extra is not None else None,
            calibration=how,
            jobs_run=report.succeeded + report.failed,
            jobs_failed=report.failed,
            reconcile_fixed=n_fixed,
            mosaic_key=f"mosaic:{window_key}" if mosaic is not None else None,
            mosaic_version=mosaic.version if mosaic is not None else None,
            mosaic_state=mosaic.state if mosaic is not None else None,
            mosaic_path=path,
            preview_path=preview if preview is not None and preview.exists() else None,
            mosaic_qa=mosaic.qa if mosaic is not None else None,
            qa_status=mosaic.qa_status if mosaic is not None else None,
            stages=tuple(stage_times(store, last_job)),
            dead_jobs=tuple(dead),
            seconds=round(time.monotonic() - t0, 1),
            exit_code=code,
        )
    finally:
        store.close()
