"""Product rows as the pipeline handlers see them: where they are, versions, staging.

A product is written by its stage under a per-attempt partial name
(``.<name>.<token>.partial``, :func:`dsa_stream.naming.partial_name`) in the staging
root and renamed into place before the stage commits; the committed row points at
it. Publishing moves it to the products root (``published_*`` columns); a product
is read from wherever the registry says it is now (:func:`current_path`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select

from dsa_stream import naming
from dsa_stream.exceptions import ProductError, RegistryError
from dsa_stream.products.fsops import ensure_absent, fsync_path, fsync_tree
from dsa_stream.products.manifest import Manifest, build_manifest
from dsa_stream.registry.models import products

logger = logging.getLogger(__name__)


def next_version(conn: Connection, kind: str, logical_key: str) -> int:
    """1 + the highest version of a product key (1 when new)."""
    top = conn.execute(
        select(func.max(products.c.version)).where(
            products.c.kind == kind, products.c.logical_key == logical_key
        )
    ).scalar_one()
    return int(top or 0) + 1


def product_row(conn: Connection, product_id: int) -> Any:
    """The ``products`` row of an id (raises when there is none)."""
    row = conn.execute(select(products).where(products.c.id == product_id)).first()
    if row is None:
        raise RegistryError(f"no product with id {product_id}")
    return row


def find_product(conn: Connection, kind: str, logical_key: str, version: int) -> Any:
    """The row of (kind, logical key, version), or None."""
    return conn.execute(
        select(products).where(
            products.c.kind == kind,
            products.c.logical_key == logical_key,
            products.c.version == version,
        )
    ).first()


def current_path(row: Any, resolve: Callable[[str, str], Path]) -> Path:
    """Where a product is now: its published copy once published, else its staging copy."""
    if row.state == "published" and row.published_root_id and row.published_rel_path:
        return resolve(row.published_root_id, row.published_rel_path)
    return resolve(row.root_id, row.rel_path)


def checked_manifest(path: Path, manifest_hash: str) -> Manifest:
    """The manifest of the product at ``path``, which must match the registered hash.

    Raises:
        ProductError: missing product, or content that differs from what was committed.
    """
    manifest = build_manifest(path)
    if manifest.digest() != manifest_hash:
        raise ProductError(
            f"{path} does not match its registered manifest "
            f"({manifest.digest()[:12]} != {manifest_hash[:12]})"
        )
    return manifest


class StagedOutput:
    """A product directory written under a partial name and renamed into place.

    ``work`` is where the stage writes; :meth:`commit` fsyncs it and renames it to
    ``final`` (an existing ``final`` left by an attempt that died after its rename but
    before the registry commit is replaced: no committed row points at it, since the
    version is new). Leftover partials of dead attempts are removed first.
    """

    def __init__(self, final: Path, token: str) -> None:
        self.final = final
        self.work = final.parent / naming.partial_name(final.name, token)

    def begin(self) -> Path:
        """Create an empty work directory (and remove dead attempts' partials)."""
        self.final.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{self.final.name}."
        for entry in self.final.parent.iterdir():
            if entry.name.startswith(prefix) and entry.name.endswith(".partial"):
                logger.info("removing the partial output of an earlier attempt: %s", entry)
                ensure_absent(entry)
        self.work.mkdir()
        return self.work

    def commit(self) -> Path:
        """Flush the work directory to disk and rename it to the final name."""
        if not self.work.is_dir():
            raise ProductError(f"{self.work} vanished before it was committed")
        fsync_tree(self.work)
        if self.final.exists():
            logger.warning("replacing an uncommitted earlier output %s", self.final)
            ensure_absent(self.final)
        os.rename(self.work, self.final)
        fsync_path(self.final.parent)
        return self.final

    def abandon(self) -> None:
        """Remove the work directory (the stage failed)."""
        ensure_absent(self.work)
