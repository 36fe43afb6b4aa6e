"""Registry bookkeeping of the calibration stage: register table sets, select them, wait.

Modules: :mod:`.records` (registration, queries, manual runs) and :mod:`.stage`
(waiting groups, the ``calibrate`` job handler).

The stage functions (:mod:`dsa_stream.calibration`) solve, choose and apply; this
module stores and finds table sets in the registry and turns decisions into group
states:

* **Registration** (:func:`register_solution`): each applicable table (bandpass, gain)
  of a solved set is a ``caltable`` product (logical key ``caltable:<set>:<type>``,
  version + 1 when the set is solved again, older versions ``superseded``) and a
  ``calibrations`` row with its validity window in observation time, the Dec it was
  solved at, the calibrator, and status ``valid`` (QA passed) or ``rejected`` (QA
  failed: never applied). The row's JSON column ``qa`` holds the set record
  (:class:`CalRecord`): set name and version, table type, transit, source group,
  reference antenna, solve parameters, software versions and QA.
* **Selection** (:func:`load_candidates` + the pure
  :func:`~dsa_stream.calibration.validity.select_table_set`): the sets whose windows
  cover the group's observation time (from its data), nearest transit first.
* **Waiting**: a group without a valid set stays ``processing`` with stage
  ``awaiting_calibration`` and the reason (policy ``wait``), or goes on with stage
  ``uncalibrated`` (policy ``image-uncalibrated``; its image job says
  ``calibrated: false``). Registering a valid set re-enqueues a ``calibrate`` job for
  every waiting group it covers (:func:`release_waiting_groups`). A group whose
  observation time cannot be read is ``quarantined``, never given the current time.
* **The calibrate handler** (:func:`calibrate_handler`, the worker's stage for job kind
  ``calibrate``) ties it together.
"""

from __future__ import annotations

from dsa_stream.pipeline.calibration.records import (
    CalRecord,
    RegisteredSet,
    Roots,
    caltables_dir,
    candidate_from_result,
    group_id_of,
    list_sets,
    load_candidates,
    manual_job,
    next_version,
    register_solution,
    select_for_observation,
)
from dsa_stream.pipeline.calibration.stage import (
    AWAITING_CALIBRATION,
    CALIBRATED,
    CALIBRATION_AVAILABLE,
    UNCALIBRATED,
    GroupInputs,
    calibrate_group,
    calibrate_handler,
    calibrate_job,
    group_inputs,
    image_job,
    register_manual,
    release_waiting_groups,
    waiting_groups,
)

__all__ = [
    "AWAITING_CALIBRATION",
    "CALIBRATED",
    "CALIBRATION_AVAILABLE",
    "UNCALIBRATED",
    "CalRecord",
    "GroupInputs",
    "RegisteredSet",
    "Roots",
    "calibrate_group",
    "calibrate_handler",
    "calibrate_job",
    "candidate_from_result",
    "caltables_dir",
    "group_id_of",
    "group_inputs",
    "image_job",
    "list_sets",
    "load_candidates",
    "manual_job",
    "next_version",
    "register_manual",
    "register_solution",
    "release_waiting_groups",
    "select_for_observation",
    "waiting_groups",
]
