"""Claim latency of the registry job store: one claim + complete round trip.

Measures, on SQLite (a file on local disk, WAL, synchronous=FULL, BEGIN IMMEDIATE)
and on PostgreSQL (a private server started like the tests do, or ``--pg-url``):

* single worker: median / p95 of ``claim()`` + ``complete()`` over N jobs;
* contention: 4 worker processes (each with its own engine) draining N jobs; the
  latency of every round trip, plus the aggregate throughput.

Usage (from the repository root)::

    .venv/bin/python bench/bench_registry.py [--jobs 1000] [--workers 4] [--pg-url URL]

Prints a Markdown table (for docs/benchmarks.md) and the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dsa_stream.registry import (
    JobKind,
    JobSpec,
    JobStore,
    WorkerIdentity,
    make_engine,
    upgrade,
)

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def percentile(values: list[float], q: float) -> float:
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def fill(url: str, n: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    store = JobStore(engine)
    for start in range(0, n, 500):
        with store.transaction() as txn:
            for i in range(start, min(start + 500, n)):
                spec = JobSpec(
                    kind=JobKind.CONVERT,
                    dedupe_key=f"bench:{i}",
                    order_key=T0 + timedelta(minutes=5 * i),
                )
                txn.enqueue(spec)
    store.close()


def drain(url: str) -> list[float]:
    """Claim + complete until nothing is left; latency of each round trip in ms."""
    store = JobStore(make_engine(url))
    wid = store.start_worker(WorkerIdentity.current("bench")).worker_id
    out = []
    while True:
        t0 = time.perf_counter()
        claim = store.claim(wid)
        if claim is None:
            break
        store.complete(claim)
        out.append((time.perf_counter() - t0) * 1000)
    store.stop_worker(wid)
    store.close()
    return out


def summary(lat: list[float], wall_s: float) -> dict[str, Any]:
    return {
        "n": len(lat),
        "median_ms": round(statistics.median(lat), 2),
        "p95_ms": round(percentile(lat, 95), 2),
        "max_ms": round(max(lat), 1),
        "throughput_per_s": round(len(lat) / wall_s, 1),
    }


def single(url: str, n: int) -> dict[str, Any]:
    fill(url, n)
    t0 = time.perf_counter()
    lat = drain(url)
    return summary(lat, time.perf_counter() - t0)


def contention(url: str, n: int, workers: int) -> dict[str, Any]:
    fill(url, n)
    cmd = [sys.executable, __file__, "--child", url]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE) for _ in range(workers)]
    lat: list[float] = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        lat += json.loads(out)
    return summary(lat, time.perf_counter() - t0)


def run_all(name: str, url_factory: Any, n: int, workers: int) -> dict[str, Any]:
    res = {"single": single(url_factory("single"), n)}
    res[f"{workers} workers"] = contention(url_factory("multi"), n, workers)
    print(f"{name}: {json.dumps(res)}", file=sys.stderr)
    return res


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| database | workers | round trips | median ms | p95 ms | max ms | round trips/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for db, runs in results.items():
        for mode, r in runs.items():
            lines.append(
                f"| {db} | {mode} | {r['n']} | {r['median_ms']} | {r['p95_ms']} | "
                f"{r['max_ms']} | {r['throughput_per_s']} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pg-url", help="existing empty PostgreSQL database (default: start one)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(drain(args.child)))
        return
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        results["SQLite"] = run_all(
            "sqlite", lambda tag: f"sqlite:///{tmp}/{tag}.sqlite3", args.jobs, args.workers
        )
    if args.pg_url:
        results["PostgreSQL"] = run_all("pg", lambda _t: args.pg_url, args.jobs, args.workers)
    else:
        sys.path.insert(0, str(REPO))
        from tests.pgserver import PgServer, find_pg_bin

        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise SystemExit("no PostgreSQL binaries; pass --pg-url")
        with PgServer(bin_dir) as server:
            results["PostgreSQL 15 (fsync=off test server)"] = run_all(
                "pg", server.create_database, args.jobs, args.workers
            )
    print(table(results))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
