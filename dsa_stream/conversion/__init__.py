"""Conversion stage: a group of DSA-110 subband files -> one validated Measurement Set.

Entry points (imported lazily, so that importing this package does not load
python-casacore; :mod:`dsa_stream.conversion.casacheck` runs casatools in child
processes and must never share a process with python-casacore):

* :func:`convert_group` - convert (or adopt an existing valid output), crash-safe;
* :class:`ConvertOptions` / :class:`ConvertResult` - the frozen option and result models;
* :func:`read_group` - the input checks alone.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "convert_group": "dsa_stream.conversion.api",
    "adopt_existing": "dsa_stream.conversion.api",
    "ConvertOptions": "dsa_stream.conversion.options",
    "ConvertResult": "dsa_stream.conversion.options",
    "ValidationOptions": "dsa_stream.conversion.options",
    "MeridianCentre": "dsa_stream.conversion.options",
    "read_group": "dsa_stream.conversion.inputs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
