"""Crash-safe output: per-attempt staging, manifest, atomic rename, adopt-or-redo.

* An attempt writes ``<out>.<host>.<pid>.<token>.partial`` next to the destination,
  fsyncs every file and directory in it, writes the manifest
  (:data:`MANIFEST_NAME`, JSON, inside the MS directory) last, renames the directory
  into place and fsyncs the parent. Only a renamed MS with a manifest is ever used.
* A leftover ``*.partial`` (an attempt that died) is never adopted; it is removed when
  its process (same host) no longer exists.
* An existing destination is adopted only if its manifest matches the inputs and the
  options and it validates; otherwise it is moved aside to
  ``<out>.quarantine-<reason>-<UTC time>`` and the group is converted again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import xxhash

from dsa_stream.conversion.inputs import GroupInputs
from dsa_stream.exceptions import ConversionError

logger = logging.getLogger(__name__)

MANIFEST_NAME = "DSA_STREAM_MANIFEST.json"
MANIFEST_FORMAT = "dsa-stream-ms-manifest"
MANIFEST_VERSION = 1
PARTIAL_SUFFIX = ".partial"
_CHUNK = 8 * 1024 * 1024


def attempt_id() -> str:
    """A name for this attempt: host, process id and a random token."""
    host = socket.gethostname().replace(".", "_") or "host"
    return f"{host}.{os.getpid()}.{secrets.token_hex(4)}"


def staging_path(out: Path, attempt: str) -> Path:
    """Where an attempt writes before the rename."""
    return out.with_name(f"{out.name}.{attempt}{PARTIAL_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_partials(out: Path) -> list[Path]:
    """Partial outputs of ``out`` whose writer (on this host) is gone."""
    host = socket.gethostname().replace(".", "_") or "host"
    found = []
    for p in out.parent.glob(f"{out.name}.*{PARTIAL_SUFFIX}"):
        parts = p.name[len(out.name) + 1 : -len(PARTIAL_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        if not _pid_alive(int(parts[1])):
            found.append(p)
    return found


def remove_stale_partials(out: Path) -> list[Path]:
    """Delete partial outputs left by dead attempts on this host; return them."""
    removed = []
    for p in stale_partials(out):
        logger.warning("removing partial output of a dead attempt: %s", p)
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _fsync_path(path: Path, directory: bool) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush (fsync) every file and directory under ``root`` (and ``root``)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            _fsync_path(Path(dirpath) / name, directory=False)
        _fsync_path(Path(dirpath), directory=True)


def publish(staging: Path, out: Path) -> None:
    """Rename the finished staging directory onto ``out`` (absent) and fsync the parent."""
    fsync_tree(staging)
    if out.exists() or out.is_symlink():
        raise ConversionError(f"{out} appeared while converting; not overwriting it")
    os.rename(staging, out)
    _fsync_path(out.parent, directory=True)


def quarantine(out: Path, reason: str) -> Path:
    """Move an unusable destination aside; return its new name."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")  # bookkeeping: when set aside
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in reason)[:40] or "unknown"
    target = out.with_name(f"{out.name}.quarantine-{slug}-{stamp}")
    n = 1
    while target.exists():
        target = out.with_name(f"{out.name}.quarantine-{slug}-{stamp}-{n}")
        n += 1
    os.rename(out, target)
    with contextlib.suppress(OSError):
        _fsync_path(out.parent, directory=True)
    logger.warning("moved %s aside to %s (%s)", out, target.name, reason)
    return target


def file_checksum(path: Path) -> str:
    """xxh3-64 of a file's bytes (hex)."""
    h = xxhash.xxh3_64()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def input_fingerprints(group: GroupInputs, checksum: bool) -> list[dict[str, Any]]:
    """Name, size, subband, header time hash and (optionally) checksum of every input."""
    out = []
    for h in group.headers:
        out.append(
            {
                "name": h.path.name,
                "size": h.size_bytes,
                "subband": h.subband,
                "time_hash": hashlib.sha256(h.time_jd.tobytes()).hexdigest()[:16],
                "xxh3_64": file_checksum(h.path) if checksum else None,
            }
        )
    return out


def caltable_fingerprints(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Path, size and xxh3 of every calibration table applied (a table is a directory)."""
    out = []
    for path in paths:
        h = xxhash.xxh3_64()
        size = 0
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        for f in files:
            h.update(str(f.relative_to(path)).encode())
            h.update(bytes.fromhex(file_checksum(f)))
            size += f.stat().st_size
        out.append(
            {
                "name": str(Path(path).resolve()),
                "size": size,
                "subband": -1,
                "xxh3_64": h.hexdigest(),
            }
        )
    return out


def inputs_key(fingerprints: Iterable[dict[str, Any]]) -> str:
    """One hash for the list of input fingerprints (subband files and calibration tables)."""
    ordered = sorted(fingerprints, key=lambda f: (f["subband"], f["name"]))
    text = json.dumps(ordered, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_manifest(ms: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest inside the MS (atomically, fsynced)."""
    doc = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **manifest}
    tmp = ms / (MANIFEST_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, default=str, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, ms / MANIFEST_NAME)


def read_manifest(ms: Path) -> dict[str, Any] | None:
    """The manifest of an MS, or None when it is missing or unreadable."""
    try:
        doc = json.loads((ms / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        return None
    return doc


def manifest_mismatch(manifest: dict[str, Any] | None, key: str, options_hash: str) -> str | None:
    """Why a manifest does not describe this conversion (None when it does)."""
    if manifest is None:
        return "no-manifest"
    if manifest.get("version") != MANIFEST_VERSION:
        return "manifest-version"
    if manifest.get("inputs_key") != key:
        return "inputs-changed"
    if manifest.get("options_hash") != options_hash:
        return "options-changed"
    if not isinstance(manifest.get("result"), dict):
        return "manifest-incomplete"
    return None
