"""Finding subband files: filesystem events, reconcile scans, settle and validation checks.

The watcher never decides group membership from arrival order or the clock: it
reads the observation time from each file's header and hands the facts to the
registry, which assembles groups and enqueues their first job.

Entry points:

* :class:`Ingestor` - the daemon's ingest loop (``run(stop_event)``), one registrar
  thread per incoming directory;
* :func:`ingest_once` - one pass (``dsa-stream ingest --once``) returning an
  :class:`IngestReport`;
* :func:`inspect_subband_file` - validate one file (:class:`FileProblem` says why not).
"""

from __future__ import annotations

from dsa_stream.watcher.ingest import (
    INCOMING_ROOT_ID,
    IngestEvent,
    Ingestor,
    ingest_once,
    utc_now,
)
from dsa_stream.watcher.inspect import (
    FileProblem,
    SubbandFileInfo,
    file_checksum,
    inspect_subband_file,
)
from dsa_stream.watcher.report import COUNTER_NAMES, FileNote, GroupNote, IngestReport

__all__ = [
    "COUNTER_NAMES",
    "INCOMING_ROOT_ID",
    "FileNote",
    "FileProblem",
    "GroupNote",
    "IngestEvent",
    "IngestReport",
    "Ingestor",
    "SubbandFileInfo",
    "file_checksum",
    "ingest_once",
    "inspect_subband_file",
    "utc_now",
]
