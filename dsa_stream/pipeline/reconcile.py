"""Disagreements between the registry and the disk, and their repair.

``dsa-stream reconcile [--fix]`` (and ``run-first-mosaic`` before it works) checks:

* every live product row (committed / publishing / published) against its files:
  present where the registry says, and equal to what was committed (images, mosaics
  and calibration tables by their manifest of checksums; a Measurement Set by its
  conversion manifest, since calibration writes CORRECTED_DATA into it later);
* files in the staging and products directories that no product row knows about
  (orphans: an output renamed into place by an attempt that died before its commit);
* partial outputs (``.<name>.<token>.partial``, ``.incoming/``) of attempts that are
  no longer running;
* running jobs whose lease expired (the reaper's work).

Repairs (``fix=True``) never delete a product silently: a product whose published
copy was found but not recorded (a crash between rename and commit) is recorded as
published; a published copy whose staging twin survived a copy-publish loses the
twin; a lost or corrupt product (the corrupt copy is moved to the quarantine with a
reason) has its producing job run again under a new dedupe key; orphans are moved to
the quarantine; dead partials are removed; expired leases are reaped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select, update

from dsa_stream import naming
from dsa_stream.exceptions import DsaStreamError, NamingError
from dsa_stream.pipeline.context import PipelineContext
from dsa_stream.products.fsops import ensure_absent
from dsa_stream.products.manifest import build_manifest
from dsa_stream.products.publish import INCOMING_DIR
from dsa_stream.registry import JobKind, JobSpec
from dsa_stream.registry.models import jobs, products
from dsa_stream.registry.states import ProductKind

logger = logging.getLogger(__name__)

Severity = Literal["error", "warning"]
#: Product states whose files must exist.
LIVE_STATES = ("committed", "publishing", "published")
#: Directories (relative to their root) holding product sets.
PRODUCT_DIRS = {
    "staging": (naming.MS_DIRNAME, naming.IMAGES_DIRNAME, naming.MOSAICS_DIRNAME),
    "products": (naming.IMAGES_DIRNAME, naming.MOSAICS_DIRNAME, naming.CALTABLES_DIRNAME),
}


class Discrepancy(BaseModel):
    """One disagreement between the registry and the disk."""

    model_config = ConfigDict(frozen=True)

    kind: str
    """missing, corrupt, unrecorded_publish, staging_twin, orphan, partial, lease_expired."""
    subject: str
    """The product (``kind logical_key vN``) or path concerned."""
    detail: str
    severity: Severity = "error"
    fix: str
    """What ``--fix`` does about it."""
    fixed: bool = False


class ReconcileReport(BaseModel):
    """What a reconcile pass found (and fixed)."""

    model_config = ConfigDict(frozen=True)

    checked_products: int
    discrepancies: tuple[Discrepancy, ...]
    fixed: bool

    @property
    def clean(self) -> bool:
        """Nothing found."""
        return not self.discrepancies


def _ms_hash(path: Path) -> str | None:
    from dsa_stream.pipeline.convert import manifest_hash

    try:
        return manifest_hash(path)
    except DsaStreamError:
        return None


def content_ok(kind: str, path: Path, manifest_hash: str, verify: bool) -> str | None:
    """Why the product at ``path`` is not what was committed (None when it is)."""
    if not path.exists():
        return "missing"
    if not verify:
        return None
    if kind == str(ProductKind.MS):
        if not (path / "table.dat").is_file():
            return "not a Measurement Set"
        return None if _ms_hash(path) == manifest_hash else "conversion manifest differs"
    try:
        digest = build_manifest(path).digest()
    except DsaStreamError as exc:
        return str(exc)
    return None if digest == manifest_hash else "checksums differ from the committed manifest"


def _label(row: Any) -> str:
    return f"{row.kind} {row.logical_key} v{row.version}"


def _running_tokens(ctx: PipelineContext) -> set[str]:
    with ctx.store.engine.connect() as conn:
        rows = conn.execute(
            select(jobs.c.id, jobs.c.lease_token).where(jobs.c.state == "running")
        ).all()
    return {f"j{r.id}-t{r.lease_token}" for r in rows}


def _walk_sets(ctx: PipelineContext) -> Iterator[tuple[str, str, Path]]:
    """(root id, rel path, path) of every entry of the product directories."""
    for root_id, dirs in PRODUCT_DIRS.items():
        for d in dirs:
            base = ctx.path(root_id, d)
            if not base.is_dir():
                continue
            for entry in sorted(base.iterdir()):
                yield root_id, f"{d}/{entry.name}", entry


class Reconciler:
    """One reconcile pass over a site (module docstring).

    Args:
        ctx: The site.
        verify: Re-checksum every product (False: existence only, for quick passes).
        orphan_age_s: Orphans younger than this are left alone while jobs run (an
            attempt renames its output into place just before it commits).
    """

    def __init__(self, ctx: PipelineContext, *, verify: bool = True, orphan_age_s: float = 3600):
        self.ctx = ctx
        self.verify = verify
        self.orphan_age_s = orphan_age_s
        self.found: list[Discrepancy] = []
        self._redo: list[tuple[int, str]] = []

    def _add(self, kind: str, subject: str, detail: str, fix: str, **kw: Any) -> Discrepancy:
        d = Discrepancy(kind=kind, subject=subject, detail=detail, fix=fix, **kw)
        self.found.append(d)
        log = logger.warning if d.severity == "warning" else logger.error
        log("reconcile: %s %s: %s", kind, subject, detail)
        return d

    # -- checks -------------------------------------------------------------------------

    def _check_product(self, row: Any, fix: bool) -> None:
        staged = self.ctx.path(row.root_id, row.rel_path)
        label = _label(row)
        if row.state == "published" and row.published_root_id and row.published_rel_path:
            dest = self.ctx.path(row.published_root_id, row.published_rel_path)
            why = content_ok(row.kind, dest, row.manifest_hash, self.verify)
            if why is None:
                if staged.exists() and staged != dest:
                    self._add(
                        "staging_twin",
                        label,
                        f"published at {dest}; its staging copy {staged} is still there",
                        "remove the staging copy",
                        severity="warning",
                    )
                    if fix:
                        ensure_absent(staged)
                        self._mark_fixed()
                return
            twin = content_ok(row.kind, staged, row.manifest_hash, self.verify) is None
            self._add(
                "missing" if why == "missing" else "corrupt",
                label,
                f"published copy {dest}: {why}",
                "publish again from staging" if twin else "quarantine it and redo the stage",
            )
            if fix:
                self._quarantine(dest, f"{label}: published copy {why}")
                if twin:
                    self._set_product(
                        row.id,
                        state="committed",
                        published_root_id=None,
                        published_rel_path=None,
                        published_at=None,
                    )
                    self._enqueue_publish(row)
                else:
                    self._set_product(row.id, state="cleaned")
                    self._redo.append((row.job_id, label))
                self._mark_fixed()
            return
        why = content_ok(row.kind, staged, row.manifest_hash, self.verify)
        if why is None:
            return
        publish_dir = _publish_rel(row)
        dest = self.ctx.path("products", publish_dir) if publish_dir else None
        if (
            why == "missing"
            and dest is not None
            and content_ok(row.kind, dest, row.manifest_hash, self.verify) is None
        ):
            self._add(
                "unrecorded_publish",
                label,
                f"found published at {dest} but recorded in staging (a crash before the commit)",
                "record it as published",
            )
            if fix:
                self._set_product(
                    row.id,
                    state="published",
                    published_root_id="products",
                    published_rel_path=publish_dir,
                    validation_status="valid",
                    published_at=datetime.now(UTC),  # bookkeeping
                )
                self._mark_fixed()
            return
        self._add(
            "missing" if why == "missing" else "corrupt",
            label,
            f"{staged}: {why}",
            "quarantine what is left and redo the stage",
        )
        if fix:
            self._quarantine(staged, f"{label}: {why}")
            self._set_product(row.id, state="cleaned")
            self._redo.append((row.job_id, label))
            self._mark_fixed()

    def _check_disk(self, known: set[tuple[str, str]], fix: bool) -> None:
        active = _running_tokens(self.ctx)
        now = time.time()  # bookkeeping
        for root_id, rel, path in _walk_sets(self.ctx):
            name = path.name
            if name == INCOMING_DIR:
                for part in sorted(path.iterdir()):
                    token = part.name.rsplit(".", 2)[1] if part.name.count(".") >= 2 else ""
                    if token not in active:
                        self._partial(part, fix)
                if fix and not any(path.iterdir()):
                    path.rmdir()  # the empty work area of copy-publishing
                continue
            if name.startswith(".") and name.endswith(".partial"):
                try:
                    _, token = naming.parse_partial_name(name)
                except NamingError:
                    token = ""
                if token not in active:
                    self._partial(path, fix)
                continue
            if name.startswith(".") or (root_id, rel) in known or _companion(root_id, rel, known):
                continue
            if rel.startswith(naming.CALTABLES_DIRNAME + "/"):
                continue  # calibration sets hold records and plots besides their tables
            age = now - path.lstat().st_mtime
            if active and age < self.orphan_age_s:
                continue
            self._add(
                "orphan",
                f"{root_id}:{rel}",
                "no product row refers to it (an attempt died between rename and commit)",
                "move it to the quarantine",
                severity="warning",
            )
            if fix:
                self._quarantine(path, f"orphan {root_id}:{rel}: no product row refers to it")
                self._mark_fixed()

    def _partial(self, path: Path, fix: bool) -> None:
        self._add(
            "partial",
            str(path),
            "work-in-progress output of an attempt that is no longer running",
            "remove it",
            severity="warning",
        )
        if fix:
            ensure_absent(path)
            self._mark_fixed()

    def _check_leases(self, fix: bool) -> None:
        now = datetime.now(UTC)  # bookkeeping
        with self.ctx.store.engine.connect() as conn:
            n = conn.execute(
                select(func.count()).where(jobs.c.state == "running", jobs.c.lease_expires_at < now)
            ).scalar_one()
        if n:
            self._add(
                "lease_expired",
                f"{n} running job(s)",
                "their worker stopped heartbeating",
                "reap: requeue them (counts as an attempt)",
            )
            if fix:
                self.ctx.store.reap()
                self._mark_fixed()

    # -- repairs ------------------------------------------------------------------------

    def _mark_fixed(self) -> None:
        last = self.found[-1]
        self.found[-1] = last.model_copy(update={"fixed": True})

    def _set_product(self, product_id: int, **values: Any) -> None:
        with self.ctx.store.transaction() as txn:
            txn.conn.execute(
                update(products)
                .where(products.c.id == product_id)
                .values(**values, updated_at=txn.now)
            )

    def _quarantine(self, path: Path, reason: str) -> None:
        if not path.exists() and not path.is_symlink():
            return
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")  # bookkeeping
        dest_dir = self.ctx.roots["quarantine"] / "reconcile" / stamp
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / path.name
        shutil.move(str(path), str(dest))  # a rename on one filesystem
        (dest_dir / f"{path.name}.reason.txt").write_text(reason + "\n")
        logger.warning("moved %s to %s: %s", path, dest, reason)

    def _enqueue_publish(self, row: Any) -> None:
        from dsa_stream.pipeline.image import publish_job

        spec = publish_job(row.kind, row.logical_key, row.version, row.obs_start)
        with self.ctx.store.transaction() as txn:
            n = _redo_count(txn.conn, spec.dedupe_key)
            txn.enqueue(spec.model_copy(update={"dedupe_key": f"{spec.dedupe_key}:redo{n}"}))

    def _requeue(self) -> None:
        for job_id, label in self._redo:
            with self.ctx.store.transaction() as txn:
                job = txn.conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
                n = _redo_count(txn.conn, job.dedupe_key)
                txn.enqueue(
                    JobSpec(
                        kind=JobKind(job.kind),
                        dedupe_key=f"{job.dedupe_key}:redo{n}"[:255],
                        order_key=job.order_key,
                        group_id=job.group_id,
                        window_id=job.window_id,
                        payload=job.payload,
                    ),
                    requeue_of=job.id,
                )
            logger.warning("requeued job %d (%s) to remake %s", job_id, job.kind, label)

    # -- the pass -----------------------------------------------------------------------

    def run(self, fix: bool = False) -> ReconcileReport:
        """Check everything; repair when ``fix``."""
        with self.ctx.store.engine.connect() as conn:
            rows = conn.execute(
                select(products).where(products.c.state.in_(LIVE_STATES)).order_by(products.c.id)
            ).all()
            known = {(r.root_id, r.rel_path) for r in conn.execute(select(products))}
            known |= {
                (r.published_root_id, r.published_rel_path)
                for r in conn.execute(
                    select(products).where(products.c.published_rel_path.is_not(None))
                )
            }
        for row in rows:
            self._check_product(row, fix)
        self._check_disk(known, fix)
        self._check_leases(fix)
        if fix:
            self._requeue()
        return ReconcileReport(
            checked_products=len(rows), discrepancies=tuple(self.found), fixed=fix
        )


def _companion(root_id: str, rel: str, known: set[tuple[str, str]]) -> bool:
    """True for a file that belongs to a known product beside it.

    Its name extends the product's name (``<ms>.applycal.log``, ``<ms>.flagversions``).
    """
    parent, _, name = rel.rpartition("/")
    return any(
        r == root_id
        and k.rpartition("/")[0] == parent
        and name.startswith(k.rpartition("/")[2] + ".")
        for r, k in known
    )


def _redo_count(conn: Any, dedupe_key: str) -> int:
    n = conn.execute(
        select(func.count()).where(jobs.c.dedupe_key.like(f"{dedupe_key}:redo%"))
    ).scalar_one()
    return int(n) + 1


def _publish_rel(row: Any) -> str | None:
    from dsa_stream.pipeline.publish import PUBLISH_DIRS

    if row.kind not in PUBLISH_DIRS:
        return None
    return f"{PUBLISH_DIRS[row.kind]}/{Path(row.rel_path).name}"


def reconcile(ctx: PipelineContext, *, fix: bool = False, verify: bool = True) -> ReconcileReport:
    """One reconcile pass (module docstring)."""
    report = Reconciler(ctx, verify=verify).run(fix)
    logger.info(
        "reconcile: %d product(s) checked, %d discrepancy(ies)%s",
        report.checked_products,
        len(report.discrepancies),
        " (fixed)" if fix and report.discrepancies else "",
    )
    return report


def report_json(report: ReconcileReport) -> dict[str, Any]:
    """The report as JSON-able data."""
    doc = report.model_dump(mode="json")
    doc["clean"] = report.clean
    return json.loads(json.dumps(doc))
