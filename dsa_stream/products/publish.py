"""Atomic publication of a product from staging into the products directory.

Every step is safe to repeat, so a crash anywhere is recovered by running the
step again (reliability.md §4.3):

* same filesystem: fsync the staged product, ``rename`` it into place, fsync
  the destination directory;
* different filesystems: copy into ``<dest>/.incoming/<name>.<token>.partial``,
  verify every checksum against the manifest, fsync, ``rename`` into place,
  fsync the destination directory. Never a silent copy-and-delete;
* a destination that already exists with the same manifest means the step was
  done (a crash after the rename); with a different manifest it is a conflict
  and nothing is overwritten.

The caller records the intent (``publishing``) in the registry before, and the
result (``published``) after; removing the staging copy is a separate,
idempotent step (:func:`remove_source`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from dsa_stream.exceptions import ProductError
from dsa_stream.products.fsops import (
    copy_product,
    crash_point,
    ensure_absent,
    fsync_path,
    fsync_tree,
    same_filesystem,
)
from dsa_stream.products.manifest import Manifest, verify_manifest

logger = logging.getLogger(__name__)

#: Directory (inside a destination directory) that holds copies being made.
INCOMING_DIR = ".incoming"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class PublishResult(BaseModel):
    """What :func:`publish_product` did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    """The published product."""
    method: Literal["rename", "copy", "already-published"]
    bytes: int


def _check_destination(dest: Path, manifest: Manifest) -> bool:
    """True when ``dest`` already holds this product; raise on a different one."""
    if not (dest.exists() or dest.is_symlink()):
        return False
    problems = verify_manifest(dest, manifest)
    if problems:
        raise ProductError(
            f"{dest} already exists with different content; not overwriting it "
            f"({'; '.join(problems[:3])})"
        )
    return True


def _publish_by_copy(source: Path, dest: Path, manifest: Manifest, token: str) -> None:
    incoming = dest.parent / INCOMING_DIR
    incoming.mkdir(exist_ok=True)
    partial = incoming / f"{dest.name}.{token}.partial"
    ensure_absent(partial)  # an earlier attempt with this token left it half-made
    copy_product(source, partial)
    crash_point("publish:after_write")
    problems = verify_manifest(partial, manifest)
    if problems:
        ensure_absent(partial)
        raise ProductError(f"copy of {source} to {partial} is corrupt: {'; '.join(problems[:3])}")
    fsync_tree(partial)
    fsync_path(incoming)
    crash_point("publish:after_fsync")
    os.rename(partial, dest)
    crash_point("publish:after_rename")
    fsync_path(dest.parent)


def _publish_by_rename(source: Path, dest: Path) -> None:
    fsync_tree(source)
    crash_point("publish:after_fsync")
    os.rename(source, dest)
    crash_point("publish:after_rename")
    fsync_path(dest.parent)
    fsync_path(source.parent)


def publish_product(
    source: Path, dest_dir: Path, name: str, manifest: Manifest, *, token: str
) -> PublishResult:
    """Publish the staged product ``source`` as ``dest_dir/name``.

    Args:
        source: The staged product (file or directory).
        dest_dir: The products directory it goes to (created if missing).
        name: Its published name.
        manifest: What the product must contain (checked before and after).
        token: Unique per attempt (e.g. ``<job>-<lease token>``), names the copy.

    Raises:
        ProductError: when the staged copy does not match the manifest, the
            destination holds a different product, or the copy is corrupt.
    """
    if not _TOKEN_RE.match(token) or "/" in name or name in ("", ".", ".."):
        raise ProductError(f"invalid publish name/token: {name!r} / {token!r}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name
    if _check_destination(dest, manifest):
        logger.info("%s is already published (same manifest)", dest)
        return PublishResult(path=dest, method="already-published", bytes=manifest.total_bytes())
    problems = verify_manifest(source, manifest)
    if problems:
        raise ProductError(
            f"staged product {source} does not match its manifest: {'; '.join(problems[:3])}"
        )
    if same_filesystem(source, dest_dir):
        _publish_by_rename(source, dest)
        method: Literal["rename", "copy"] = "rename"
    else:
        _publish_by_copy(source, dest, manifest, token)
        method = "copy"
    logger.info("published %s -> %s (%s)", source, dest, method)
    return PublishResult(path=dest, method=method, bytes=manifest.total_bytes())


def remove_source(source: Path) -> bool:
    """Delete the staging copy after a successful publication (missing counts as done)."""
    removed = ensure_absent(source)
    crash_point("publish:after_cleanup")
    return removed


def stale_partials(dest_dir: Path, active_tokens: set[str]) -> list[Path]:
    """Copies in ``dest_dir/.incoming`` that belong to no running attempt."""
    incoming = dest_dir / INCOMING_DIR
    if not incoming.is_dir():
        return []
    out = []
    for entry in sorted(incoming.iterdir()):
        parts = entry.name.rsplit(".", 2)
        token = parts[1] if len(parts) == 3 and parts[2] == "partial" else None
        if token is None or token not in active_tokens:
            out.append(entry)
    return out
