"""Mosaic stage: window planner, primary-beam-weighted linear coadd, mosaic QA.

Entry points (imported lazily, so that ``dsa_stream.config`` can import the options
without loading astropy, scipy or matplotlib):

* :func:`plan_windows` - which consecutive groups form a mosaic window (pure function);
* :func:`build_mosaic` - coadd tiles, check the result, write FITS + noise map + PNG;
* :func:`tile_from_fits` - a :class:`MosaicTile` from an image and a beam FITS file;
* option and result models: :class:`MosaicOptions`, :class:`PlannerOptions`,
  :class:`CoaddOptions`, :class:`QAOptions`, :class:`MosaicResult`, :class:`PlanResult`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "plan_windows": "dsa_stream.mosaic.planner",
    "GroupRecord": "dsa_stream.mosaic.planner",
    "PreviousWindow": "dsa_stream.mosaic.planner",
    "MemberRef": "dsa_stream.mosaic.planner",
    "PlannedWindow": "dsa_stream.mosaic.planner",
    "PlanResult": "dsa_stream.mosaic.planner",
    "MosaicOptions": "dsa_stream.mosaic.options",
    "PlannerOptions": "dsa_stream.mosaic.options",
    "CoaddOptions": "dsa_stream.mosaic.options",
    "QAOptions": "dsa_stream.mosaic.options",
    "ExpectedSource": "dsa_stream.mosaic.options",
    "MosaicTile": "dsa_stream.mosaic.options",
    "build_mosaic": "dsa_stream.mosaic.api",
    "MosaicResult": "dsa_stream.mosaic.results",
    "MosaicQA": "dsa_stream.mosaic.results",
    "tile_from_fits": "dsa_stream.mosaic.fitsio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
