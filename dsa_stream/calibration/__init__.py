"""Calibration: the calibrator catalogue, transit finding, solving, QA, validity and applying.

Modules (nothing is imported here: the simulator imports the catalogue, and the CASA
child processes import :mod:`.casa_steps`, which must never load python-casacore):

* :mod:`.catalog` - the bundled calibrator catalogue (Perley & Butler 2017 flux-scale
  sources plus bright VLA calibrators over Dec 0-90 deg);
* :mod:`.observation` - a group's times, pointing and band, read from its data (UVH5
  headers or an MS), never from the clock (:class:`ObservationTimeError` otherwise);
* :mod:`.geometry` - LST, apparent <-> ICRS, meridian transits, separations;
* :mod:`.transits` - :func:`find_transits`: which calibrators pass through the beam
  during a group, when, and with what response;
* :mod:`.model` - MODEL_DATA = S(nu) x A(theta(t), nu) for the drifting calibrator;
* :mod:`.flagging`, :mod:`.refant` - flagging before the solve, reference antenna;
* :mod:`.casa_steps` - the CASA calls (each run in a child process with a timeout);
* :mod:`.solve` - :func:`solve_group`: calibrator group -> bandpass + gain set;
* :mod:`.qa`, :mod:`.plots` - QA verdict and PNG plots of a set;
* :mod:`.validity` - validity windows and the pure choice of a set for a group;
* :mod:`.apply` - applycal on a target MS, or on-the-fly application in the conversion;
* :mod:`.options` - every option model, and their mapping from the ``calibrate:``
  configuration section.

Registry bookkeeping (registering sets, finding them, waiting groups, the worker's
``calibrate`` handler) is in :mod:`dsa_stream.pipeline.calibration`.
"""

from __future__ import annotations
