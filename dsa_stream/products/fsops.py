"""Durable filesystem primitives: fsync of files, directories and trees; idempotent removal.

``rename`` is atomic within one filesystem but not durable until the parent
directory is fsynced, and the data must be fsynced before the rename
(reliability.md §4.1). ``shutil.move`` is never used to publish: across
filesystems it silently copies and deletes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

#: Environment variable naming a crash point for fault-injection tests: when a
#: step reaches the named point the process exits at once with status 137, as a
#: SIGKILL would leave it.
CRASH_ENV = "DSA_STREAM_CRASH_AT"


def crash_point(name: str) -> None:
    """Exit immediately (status 137) if ``$DSA_STREAM_CRASH_AT`` names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


def fsync_path(path: Path) -> None:
    """Flush one file or directory to disk (fsync)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush every file and directory of a product (a single file, or a tree) to disk."""
    if path.is_file():
        fsync_path(path)
        return
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def same_filesystem(a: Path, b: Path) -> bool:
    """True when ``a`` and the existing directory ``b`` live on one filesystem."""
    return os.stat(a).st_dev == os.stat(b).st_dev


def ensure_absent(path: Path) -> bool:
    """Remove a file or tree; a missing path counts as success. True if something was removed."""
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            return True
        return False
    if not path.exists():
        return False

    def _onerror(_func: object, _p: str, exc_info: tuple[type, BaseException, object]) -> None:
        exc = exc_info[1]
        if not (isinstance(exc, OSError) and exc.errno == errno.ENOENT):
            raise exc

    shutil.rmtree(path, onerror=_onerror)  # Python 3.11: onexc arrives in 3.12
    return True


def copy_product(src: Path, dst: Path) -> None:
    """Copy a file or a tree to ``dst`` (which must not exist), preserving mtimes."""
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False, copy_function=shutil.copy2)
    else:
        shutil.copy2(src, dst)
