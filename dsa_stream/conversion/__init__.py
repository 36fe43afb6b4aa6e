"""Conversion stage: a group of DSA-110 subband files -> one validated Measurement Set.

Entry points (imported lazily, so that importing this package does not load
python-casacore; :mod:`dsa_stream.conversion.casacheck` runs casatools in child
processes and must never share a process with python-casacore):

* :func:`convert_group` - convert, or adopt an existing valid output, crash-safe;
* :func:`adopt_existing` - the adoption decision alone;
* :class:`ConvertOptions` / :class:`ConvertResult` - the frozen option and result models;
* :func:`read_group` - the input checks alone.

What the later stages must know about the MS
--------------------------------------------

* One spectral window: all ``expected_subbands`` x channels, ascending, positive widths.
  Missing subbands are present as zero, flagged channels (``ConvertResult.
  subbands_missing`` and the main-table keyword ``DSA_MISSING_SUBBANDS``).
* Rows are time-major (integration, then baseline, autocorrelations included and
  flagged). Conventions are pyuvdata's ``write_ms`` ones (keyword
  ``pyuvdata_flip_conj``: UVW = -uvw_pyuvdata, DATA = conj(V_pyuvdata)); CASA, WSClean
  and pyuvdata's ``read_ms`` all read them correctly.
* ``OBSERVATION::TELESCOPE_NAME`` is ``DSA_110`` (casa_env's measures overlay defines
  the observatory); ANTENNA holds all stations (names as in the files, 4.65 m, ALT-AZ),
  so antenna index = antenna number = station - 1.
* Mode ``midpoint`` (default): one FIELD at the ICRS position of apparent (LST(t_mid),
  Dec) - image this with WSClean. Mode ``icrs`` (``phase_center_deg``): one FIELD at
  any ICRS position - convert a calibrator group this way (centre = the calibrator) and
  ``setjy(standard='manual')`` then puts the model where the calibrator is. Mode
  ``fields``: one FIELD per integration at its meridian centre (tclean only; WSClean
  3.1 needs one centre).
* The per-integration meridian centres are in the subtable ``DSA_MERIDIAN_CENTRES``
  (TIME, LST, APPARENT_DEC, RA_ICRS, DEC_ICRS; referenced by the main-table keyword of
  that name) and in ``ConvertResult.meridian_centres``; POINTING gives every antenna
  the meridian centre of each integration (the dishes point at HA = 0).
* Only DATA is written: no MODEL_DATA or CORRECTED_DATA (CASA's ``setjy(usescratch=
  False)`` uses a virtual model, ``applycal`` creates CORRECTED_DATA, WSClean
  ``-no-reorder`` adds MODEL_DATA). With ``apply_tables`` DATA is already calibrated.
* WEIGHT = 2 x channel width x integration time x mean nsamples (CASA's ``nyq``
  weight), SIGMA = WEIGHT**-0.5; WEIGHT_SPECTRUM only on request.
* The manifest ``DSA_STREAM_MANIFEST.json`` inside the MS records the inputs (names,
  sizes, header-time hash, xxh3 checksums), the options and their hash, the software
  versions and the :class:`ConvertResult`.
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
