"""Software versions, recorded with every product for provenance."""

from __future__ import annotations

import functools
import platform
import re
import shutil
import subprocess
from importlib import metadata

from dsa_stream import __version__

#: Python distributions whose versions matter for the science products.
TRACKED_DISTRIBUTIONS = (
    "numpy",
    "astropy",
    "pyuvdata",
    "h5py",
    "casatools",
    "casatasks",
    "casadata",
    "sqlalchemy",
    "reproject",
)


def distribution_version(name: str) -> str | None:
    """Installed version of a Python distribution, or None when it is missing."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def wsclean_version(executable: str = "wsclean", timeout_s: float = 20.0) -> str | None:
    """Version reported by ``wsclean --version`` (e.g. ``3.1.0``), or None if absent."""
    path = shutil.which(executable)
    if path is None:
        return None
    try:
        proc = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"WSClean version (\S+)", proc.stdout + proc.stderr)
    return m.group(1) if m else None


def software_versions(include_external: bool = True) -> dict[str, str | None]:
    """Versions of dsa-stream, Python, the tracked packages and (optionally) WSClean."""
    out: dict[str, str | None] = {"dsa-stream": __version__, "python": platform.python_version()}
    out.update({name: distribution_version(name) for name in TRACKED_DISTRIBUTIONS})
    if include_external:
        out["wsclean"] = wsclean_version()
    return out
