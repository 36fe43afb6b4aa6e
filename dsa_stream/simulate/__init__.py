"""Synthetic DSA-110 observations: real-looking UVH5 subband files with a known sky and gains.

Entry points:

* :func:`simulate_night` - plan, compute and write a night (``truth.json`` + files);
* :func:`plan_night` - everything except the visibilities (cheap);
* :func:`load_truth` - read ``truth.json`` back, with gains/bandpass re-evaluation and
  the sources expected in each group's field.

The file layout follows the DSA-110 correlator writer; see :mod:`dsa_stream.simulate.uvh5`.
The visibility and gain conventions are in :mod:`dsa_stream.simulate.visibilities` and
:mod:`dsa_stream.simulate.gains`.
"""

from __future__ import annotations

from dsa_stream.simulate.night import GroupResult, SimulationResult, simulate_night
from dsa_stream.simulate.options import (
    CorruptionOptions,
    PointSourceSpec,
    SimulationOptions,
    SkyOptions,
    WriterOptions,
)
from dsa_stream.simulate.plan import NightPlan, plan_night
from dsa_stream.simulate.truth import FieldSource, SimulationTruth, load_truth

__all__ = [
    "CorruptionOptions",
    "FieldSource",
    "GroupResult",
    "NightPlan",
    "PointSourceSpec",
    "SimulationOptions",
    "SimulationResult",
    "SimulationTruth",
    "SkyOptions",
    "WriterOptions",
    "load_truth",
    "plan_night",
    "simulate_night",
]
