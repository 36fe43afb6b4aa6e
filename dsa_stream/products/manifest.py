"""Product manifests: the list of files of a product with sizes and checksums.

A product is a single file (a FITS image, a PNG) or a directory tree (a
Measurement Set, a calibration table). Its manifest maps every regular file,
by path relative to the product, to its size and xxh64, and hashes to one
``manifest_hash`` that the registry stores. Copies are verified against it,
and a leftover output is adopted only when it matches.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import xxhash
from pydantic import BaseModel, ConfigDict

from dsa_stream.exceptions import ProductError

_CHUNK = 8 << 20


class FileEntry(BaseModel):
    """One file of a product."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int
    xxh64: str


class Manifest(BaseModel):
    """Every regular file of a product (relative path -> size and checksum)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    is_dir: bool
    files: dict[str, FileEntry]

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form: the product's ``manifest_hash``."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def total_bytes(self) -> int:
        """Sum of the file sizes."""
        return sum(e.size for e in self.files.values())


def file_xxh64(path: Path) -> str:
    """xxh64 of a file's bytes (hex)."""
    digest = xxhash.xxh64()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink():
                raise ProductError(f"{path}: symbolic links are not allowed inside products")
            yield path


def build_manifest(path: Path) -> Manifest:
    """Checksum every regular file of a product (file or directory).

    Raises:
        ProductError: if the product does not exist or holds symbolic links.
    """
    if path.is_symlink() or not path.exists():
        raise ProductError(f"product {path} does not exist (or is a symbolic link)")
    if path.is_file():
        return Manifest(
            is_dir=False,
            files={path.name: FileEntry(size=path.stat().st_size, xxh64=file_xxh64(path))},
        )
    files = {
        str(f.relative_to(path)): FileEntry(size=f.stat().st_size, xxh64=file_xxh64(f))
        for f in _walk_files(path)
    }
    return Manifest(is_dir=True, files=files)


def verify_manifest(path: Path, expected: Manifest) -> list[str]:
    """Differences between the product at ``path`` and ``expected`` (empty when equal).

    The name of a single-file product may differ (it is compared by content).
    """
    try:
        actual = build_manifest(path)
    except ProductError as exc:
        return [str(exc)]
    if actual.is_dir != expected.is_dir:
        return [f"{path}: expected a {'directory' if expected.is_dir else 'file'}"]
    if not expected.is_dir:
        (a,), (e,) = actual.files.values(), expected.files.values()
        return [] if a == e else [f"{path}: size/checksum {a} != {e}"]
    problems = []
    for rel in sorted(set(expected.files) | set(actual.files)):
        e, a = expected.files.get(rel), actual.files.get(rel)
        if e is None:
            problems.append(f"{rel}: unexpected file")
        elif a is None:
            problems.append(f"{rel}: missing")
        elif a != e:
            problems.append(f"{rel}: size/checksum {a.size}/{a.xxh64} != {e.size}/{e.xxh64}")
    return problems
