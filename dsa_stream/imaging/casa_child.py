"""Code that runs inside the tclean child interpreter (casatools, never python-casacore).

Imported only by ``python -m dsa_stream.toolrun`` in a fresh process; it must not
import casacore, :mod:`dsa_stream.imaging.msinfo` or anything that does.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from dsa_stream.exceptions import ImagingError

logger = logging.getLogger(__name__)


def _scalars(summary: Any) -> dict[str, Any]:
    """The JSON-friendly scalar entries of tclean's return value."""
    out: dict[str, Any] = {}
    if not isinstance(summary, dict):
        return out
    for key, value in summary.items():
        if isinstance(value, bool | int | float | str):
            out[str(key)] = value
        elif hasattr(value, "item") and getattr(value, "size", 2) == 1:
            out[str(key)] = value.item()
    return out


def _remove(prefix: str, suffixes: list[str]) -> None:
    for suffix in suffixes:
        path = Path(prefix + suffix)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def tclean_and_export(
    params: dict[str, Any], exports: dict[str, str], remove: list[str], casa_log: str | None = None
) -> dict[str, Any]:
    """Run ``casatasks.tclean(**params)`` and ``exportfits`` the images named in ``exports``.

    Args:
        params: tclean keyword arguments.
        exports: CASA image suffix (``.image``) -> FITS path.
        remove: Suffixes of CASA images deleted before the run and after the export.
        casa_log: File receiving the CASA log of this run (the parent copies it into
            the imaging log); None: CASA's configured log.

    Returns:
        CASA version, tclean seconds and the scalar part of tclean's summary.
    """
    from dsa_stream import casa_env

    tasks = casa_env.casatasks()
    tools = casa_env.casatools()
    if casa_log:
        tasks.casalog.setlogfile(casa_log)
    prefix = str(params["imagename"])
    _remove(prefix, remove)
    start = time.monotonic()
    summary = tasks.tclean(**params)
    seconds = time.monotonic() - start
    for suffix, fits in exports.items():
        image = prefix + suffix
        if not Path(image).is_dir():
            raise ImagingError(f"tclean did not write {image}")
        tasks.exportfits(imagename=image, fitsimage=fits, overwrite=True, velocity=False)
    _remove(prefix, remove)
    logger.info("tclean finished in %.1f s", seconds)
    return {
        "casa_version": str(tools.version_string()),
        "seconds": seconds,
        "summary": _scalars(summary),
    }
