"""The streaming daemon and its operator surface (``dsa-stream run``, reliability §7.6-7.7).

* :class:`Daemon` (:mod:`~dsa_stream.daemon.service`): ingest, reaper and the
  sequential worker in one service, with two-stage shutdown and ``--burst``;
* :mod:`~dsa_stream.daemon.lock`: one daemon per site (``fcntl.flock``);
* :mod:`~dsa_stream.daemon.guards`: disk-space and memory guards (pause, never fail);
* :mod:`~dsa_stream.daemon.health`, :mod:`~dsa_stream.daemon.metrics`,
  :mod:`~dsa_stream.daemon.httpd`: ``/health`` and ``/metrics``;
* :mod:`~dsa_stream.daemon.state`: the status file ``dsa-stream status`` reads;
* :mod:`~dsa_stream.daemon.sdnotify`: systemd readiness and watchdog;
* :mod:`~dsa_stream.daemon.control`: ``dsa-stream workers drain|kill``;
* :mod:`~dsa_stream.daemon.orphans`: stage processes that outlived a killed daemon;
* :mod:`~dsa_stream.daemon.joblogs`: finding and following per-job stage logs.

Import from the submodules: this package imports nothing, so that ``dsa-stream
status`` does not load the watcher and the stages. The daemon layer may import
``pipeline``, ``registry`` and ``watcher``; stage packages never import it.
"""

from __future__ import annotations
