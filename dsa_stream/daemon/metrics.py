"""``/metrics``: the reliability figures as Prometheus text (exposition format 0.0.4).

Every metric is prefixed ``dsa_stream_``. Registry gauges (jobs, backlog, groups,
products, durations) are read at each scrape; ingest counters and guard values
come from the daemon itself. The names are listed in docs/operations.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import psutil

from dsa_stream.daemon.health import RegistryView
from dsa_stream.daemon.state import DaemonSnapshot

#: Content type of the exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "dsa_stream_"
_HEALTH_CODE = {"ok": 0, "degraded": 1, "failing": 2}

Sample = tuple[Mapping[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Exposition:
    """Builds one exposition document, family by family."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        """One metric family: HELP, TYPE and its samples (skipped when it has none)."""
        rows = list(samples)
        if not rows:
            return
        full = PREFIX + name
        self.lines.append(f"# HELP {full} {help_text}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in rows:
            text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            self.lines.append(
                f"{full}{{{text}}} {_number(value)}" if text else f"{full} {_number(value)}"
            )

    def gauge(self, name: str, help_text: str, value: float | None) -> None:
        """A single unlabelled gauge (skipped when None)."""
        if value is not None:
            self.family(name, "gauge", help_text, [({}, value)])

    def text(self) -> str:
        """The document."""
        return "\n".join(self.lines) + "\n"


def _registry(ex: Exposition, view: RegistryView) -> None:
    st = view.stats
    ex.family(
        "jobs",
        "gauge",
        "Jobs by kind and state.",
        (
            ({"kind": k, "state": s}, n)
            for k, by in sorted(st.jobs_by_kind.items())
            for s, n in sorted(by.items())
        ),
    )
    ex.family(
        "backlog_jobs",
        "gauge",
        "Queued jobs by kind: claimable now, or delayed by retry backoff.",
        (
            ({"kind": k, "availability": a}, n)
            for k, by in sorted(view.backlog.items())
            for a, n in sorted(by.items())
        ),
    )
    running: dict[str, int] = {}
    for job in st.running:
        running[job.kind] = running.get(job.kind, 0) + 1
    ex.family(
        "running_jobs",
        "gauge",
        "Running jobs by kind.",
        (({"kind": k}, n) for k, n in sorted(running.items())),
    )
    ex.family(
        "stage_duration_seconds",
        "gauge",
        "Claim-to-success duration of recent successful attempts (p50, p95) by kind.",
        (
            ({"kind": d.kind, "quantile": q}, v)
            for d in st.durations
            for q, v in (("0.5", d.p50_s), ("0.95", d.p95_s))
        ),
    )
    ex.family(
        "stage_duration_samples",
        "gauge",
        "Successful attempts behind stage_duration_seconds, by kind.",
        (({"kind": d.kind}, d.n) for d in st.durations),
    )
    ex.family(
        "groups",
        "gauge",
        "Observation groups by state.",
        (({"state": s}, n) for s, n in sorted(st.groups_by_state.items())),
    )
    ex.family(
        "input_files",
        "gauge",
        "Input files by state.",
        (({"state": s}, n) for s, n in sorted(st.files_by_state.items())),
    )
    ex.family(
        "products",
        "gauge",
        "Products by kind and state.",
        (
            ({"kind": k, "state": s}, n)
            for k, by in sorted(view.products.items())
            for s, n in sorted(by.items())
        ),
    )
    ex.family(
        "products_published",
        "gauge",
        "Published products by kind.",
        (({"kind": k}, by.get("published", 0)) for k, by in sorted(view.products.items())),
    )
    ex.family(
        "workers",
        "gauge",
        "Workers by state.",
        (({"state": s}, n) for s, n in sorted(st.workers_by_state.items())),
    )
    ex.gauge("dead_letter_jobs", "Dead jobs not retried yet.", st.dead_letter)
    ex.gauge(
        "rejected_files", "Files on disk rejected as not valid subband files.", st.files_rejected
    )
    ex.gauge(
        "worker_heartbeat_age_seconds",
        "Age of this daemon's worker heartbeat.",
        view.worker_heartbeat_age_s,
    )


def _daemon(ex: Exposition, d: DaemonSnapshot) -> None:
    worker_up = d.phase in ("running", "stopping") and d.threads.get("worker", False)
    ex.gauge("worker_up", "1 while this daemon's worker thread runs.", 1 if worker_up else 0)
    stage = d.worker is not None and d.worker.state == "running"
    ex.gauge("stage_running", "1 while a stage runs.", 1 if stage else 0)
    if stage and d.worker is not None and d.worker.stage_elapsed_s is not None:
        ex.gauge(
            "stage_elapsed_seconds", "Time the running stage has run.", d.worker.stage_elapsed_s
        )
    reason = d.paused_reason or ""
    ex.family(
        "claiming_paused",
        "gauge",
        "1 while a guard holds claiming back (disk: everything; memory: large stages).",
        (({"guard": g}, 1 if reason.startswith(g + ":") else 0) for g in ("disk", "memory")),
    )
    ex.family(
        "disk_free_bytes",
        "gauge",
        "Free space of the guarded site directories.",
        (({"dir": k}, v) for k, v in sorted(d.disk_free_bytes.items()) if v is not None),
    )
    ex.family(
        "disk_min_free_bytes",
        "gauge",
        "Free-space threshold below which claiming pauses.",
        (({"dir": k}, v) for k, v in sorted(d.disk_min_free_bytes.items())),
    )
    ex.gauge("memory_available_bytes", "Memory available to a new stage.", d.memory_available_bytes)
    for name, value in d.ingest.items():
        if name == "pending":
            ex.gauge(
                "ingest_pending_files", "Files seen but not yet registered or rejected.", value
            )
        else:
            ex.family(
                f"ingest_{name}_total",
                "counter",
                f"Ingest counter {name} since start.",
                [({}, value)],
            )


def _process(ex: Exposition) -> None:
    proc = psutil.Process(os.getpid())
    with proc.oneshot():
        ex.gauge(
            "process_resident_memory_bytes",
            "Resident memory of the daemon.",
            proc.memory_info().rss,
        )
        ex.gauge("process_open_fds", "Open file descriptors of the daemon.", proc.num_fds())
        ex.gauge("process_threads", "Threads of the daemon.", proc.num_threads())


def render(
    daemon: DaemonSnapshot | None,
    view: RegistryView | None,
    health_status: str,
) -> str:
    """The ``/metrics`` document."""
    ex = Exposition()
    ex.gauge("up", "1: the daemon answers.", 1)
    ex.gauge(
        "registry_up",
        "1 when the registry could be read for this scrape.",
        1 if view is not None else 0,
    )
    ex.gauge("health_status", "0 ok, 1 degraded, 2 failing.", _HEALTH_CODE.get(health_status, 2))
    if daemon is not None:
        _daemon(ex, daemon)
    if view is not None:
        _registry(ex, view)
    _process(ex)
    return ex.text()
