"""The ``publish`` handler: finalize a product (validation verdict) and publish it.

Finalize: the product's files are found (staging, or already in the products
directory after a crash between rename and commit), their manifest matches the hash
committed with the product, and every FITS file opens with a valid celestial WCS
(RA in [0, 360)). The verdict goes to ``products.validation_status``.

Publish: a valid product whose QA passed (``products.publish_requires_qa``) moves
atomically from staging to ``<products>/<images|mosaics>/<name>``
(:func:`dsa_stream.products.publish_product`: rename on one filesystem; copy, fsync,
verify and rename across filesystems). Every step is safe to repeat, so a stage
killed anywhere is finished by the retry; the commit records the published path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import update

from dsa_stream import naming
from dsa_stream.exceptions import ProductError, RegistryError
from dsa_stream.pipeline.context import PipelineContext, StageOutcome, StageRun, payload
from dsa_stream.pipeline.products import find_product
from dsa_stream.products.manifest import Manifest, build_manifest
from dsa_stream.registry import Txn
from dsa_stream.registry.models import products
from dsa_stream.registry.states import ProductKind, QaStatus, ValidationStatus

logger = logging.getLogger(__name__)

#: Directory of each published kind under the products root.
PUBLISH_DIRS = {
    str(ProductKind.IMAGE): naming.IMAGES_DIRNAME,
    str(ProductKind.MOSAIC): naming.MOSAICS_DIRNAME,
}


def publish_rel_path(kind: str, name: str) -> str:
    """Path of a published product relative to the products root."""
    if kind not in PUBLISH_DIRS:
        raise ProductError(f"products of kind {kind!r} are not published")
    return f"{PUBLISH_DIRS[kind]}/{name}"


def fits_problems(path: Path) -> list[str]:
    """Why the FITS files of a product are unusable (empty when every one is fine)."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    files = [path] if path.is_file() else sorted(path.rglob("*.fits"))
    problems = []
    for f in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                header = fits.getheader(f)
                wcs = WCS(header).celestial
            if not wcs.has_celestial:
                problems.append(f"{f.name}: no celestial WCS")
            elif not 0.0 <= float(header.get("CRVAL1", -1.0)) < 360.0:
                problems.append(f"{f.name}: CRVAL1 {header.get('CRVAL1')} outside [0, 360)")
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{f.name}: {exc}")
    return problems


def validate(path: Path | None, manifest_hash: str) -> tuple[Manifest | None, list[str]]:
    """The finalize check of a product's files: (manifest, problems)."""
    if path is None:
        return None, ["the product's files are missing (neither staged nor published)"]
    try:
        manifest = build_manifest(path)
    except ProductError as exc:
        return None, [str(exc)]
    problems = []
    if manifest.digest() != manifest_hash:
        problems.append(f"{path} differs from the manifest committed with the product")
    problems += fits_problems(path)
    return manifest, problems


def _set(row_id: int, *, published: bool = False, **values: Any) -> Any:
    """A completion-transaction write of product columns (``published``: stamp the time)."""

    def write(txn: Txn) -> None:
        stamp = {"published_at": txn.now} if published else {}
        txn.conn.execute(
            update(products)
            .where(products.c.id == row_id)
            .values(**values, **stamp, updated_at=txn.now)
        )

    return write


def publish_handler(ctx: PipelineContext, run: StageRun) -> StageOutcome:
    """Handler of ``publish`` jobs (module docstring)."""
    from dsa_stream.products.publish import publish_product, remove_source

    claim = run.claim
    kind, key = str(payload(claim, "kind")), str(payload(claim, "logical_key"))
    version = int(payload(claim, "version", 1))
    with ctx.store.engine.connect() as conn:
        row = find_product(conn, kind, key, version)
    if row is None:
        raise RegistryError(f"publish job {claim.job_id}: no product {key} v{version}")
    name = Path(row.rel_path).name
    rel_dest = publish_rel_path(kind, name)
    dest = ctx.path("products", rel_dest)
    source = ctx.path(row.root_id, row.rel_path)
    found = source if source.exists() else dest if dest.exists() else None
    manifest, problems = validate(found, row.manifest_hash)
    label = f"{kind} {key} v{version}"
    if problems or manifest is None:
        logger.error("%s is invalid: %s", label, "; ".join(problems))
        return StageOutcome(
            in_transaction=_set(
                row.id, validation_status=str(ValidationStatus.INVALID), state="committed"
            ),
            detail=f"invalid, not published: {'; '.join(problems)}"[:1000],
        )
    if ctx.settings.products.publish_requires_qa and row.qa_status == str(QaStatus.FAILED):
        logger.warning("%s: QA failed, not published (stays in staging)", label)
        return StageOutcome(
            in_transaction=_set(row.id, validation_status=str(ValidationStatus.VALID)),
            detail="valid; QA failed: not published",
        )
    result = publish_product(source, dest.parent, name, manifest, token=run.token)
    if result.method != "rename":
        # The published copy is verified: the staging copy may go before the commit (a
        # crash in between leaves the copy found by the retry or by reconcile).
        remove_source(source)
    logger.info("%s published: %s (%s)", label, result.path, result.method)
    return StageOutcome(
        in_transaction=_set(
            row.id,
            validation_status=str(ValidationStatus.VALID),
            state="published",
            published_root_id="products",
            published_rel_path=rel_dest,
            published=True,
        ),
        detail=f"published {rel_dest} ({result.method}, {result.bytes} bytes)",
    )
