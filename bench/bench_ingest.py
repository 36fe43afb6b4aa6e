"""Registration latency of the ingestor: file settled -> file + group row -> convert job.

A producer copies pre-simulated subband files into ``incoming/`` (one group of 16
every ``--cadence`` seconds, in a shuffled subband order, ``direct`` writes) while
an :class:`~dsa_stream.watcher.Ingestor` runs with the inotify observer and the
given settle time, on SQLite (a file on local disk) and on PostgreSQL (a private
server started like the tests do, or ``--pg-url``). Wall-clock times per file:

* written: the producer closed the file;
* settled: the ingestor found it settled and started inspecting it (the settle
  wait, ``settled - written``, is reported separately: it is ``settle_s`` plus the
  event/loop delay);
* committed: its registration transaction committed (file row, group row and,
  for the 16th subband, the convert job).

Reported: p50/p95 of ``committed - settled`` per file (inspect + xxh64 + one
transaction), of ``convert job committed - last subband settled`` per group, and
of the settle wait, plus the end-to-end ``last subband written -> convert job``.

Usage (from the repository root)::

    .venv/bin/python bench/bench_ingest.py [--groups 3] [--settle 10] [--cadence 3]
        [--antennas 16] [--channels 48] [--pg-url URL]

Prints a Markdown table (for docs/benchmarks.md) and the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsa_stream.config import PathsConfig, RegistryConfig, Settings, WatcherConfig
from dsa_stream.registry import JobStore, make_engine, upgrade
from dsa_stream.simulate import SimulationOptions, simulate_night
from dsa_stream.watcher import IngestEvent, Ingestor, file_checksum

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def simulate(out: Path, groups: int, antennas: int, channels: int) -> list[list[Path]]:
    result = simulate_night(
        SimulationOptions(
            out_dir=out,
            n_groups=groups,
            antennas=antennas,
            channels_per_subband=channels,
            seed=3,
            start=datetime(2025, 10, 2, tzinfo=UTC),
        )
    )
    return [[out / name for name in g.files] for g in result.groups]


def produce(
    groups: list[list[Path]], incoming: Path, cadence: float, written: dict[str, datetime]
) -> None:
    rng = random.Random(1)
    for k, files in enumerate(groups):
        if k:
            time.sleep(cadence)
        order = list(files)
        rng.shuffle(order)
        for src in order:
            shutil.copyfile(src, incoming / src.name)
            written[src.name] = datetime.now(UTC)


def run_one(url: str, groups: list[list[Path]], args: argparse.Namespace) -> dict[str, Any]:
    engine = make_engine(url)
    upgrade(engine)
    root = Path(tempfile.mkdtemp(dir=REPO / "bench"))
    try:
        (root / "incoming").mkdir()
        settings = Settings(
            paths=PathsConfig(root=root),
            registry=RegistryConfig(url=url),
            watcher=WatcherConfig(settle_s=args.settle, reconcile_interval_s=600),
        )
        events: list[IngestEvent] = []
        written: dict[str, datetime] = {}
        store = JobStore(engine, settings.worker)
        ingestor = Ingestor(settings, store=store, listener=events.append)
        stop = threading.Event()
        thread = threading.Thread(target=ingestor.run, args=(stop,))
        thread.start()
        while not ingestor._started:
            time.sleep(0.05)
        n_files = sum(len(g) for g in groups)
        produce(groups, root / "incoming", args.cadence, written)
        deadline = time.monotonic() + args.settle + 120
        while len(events) < n_files and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        thread.join()
        stats = ingestor.stats()
        ingestor.close()
        store.close()
        return summarise(events, written, stats, n_files)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        engine.dispose()


def _p(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p95_ms": round(percentile(values, 95) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def summarise(
    events: list[IngestEvent], written: dict[str, datetime], stats: dict[str, int], n_files: int
) -> dict[str, Any]:
    if len(events) != n_files:
        raise SystemExit(f"only {len(events)} of {n_files} files registered: {stats}")
    per_file = [(e.committed_at - e.settled_at).total_seconds() for e in events]
    settle = [(e.settled_at - written[e.rel_path]).total_seconds() for e in events]
    by_group: dict[str, list[IngestEvent]] = {}
    for e in events:
        by_group.setdefault(e.group_key, []).append(e)
    to_job, end_to_end = [], []
    for evs in by_group.values():
        (done,) = [e for e in evs if e.convert_job_id is not None]
        last_settled = max(e.settled_at for e in evs)
        last_written = max(written[e.rel_path] for e in evs)
        to_job.append((done.committed_at - last_settled).total_seconds())
        end_to_end.append((done.committed_at - last_written).total_seconds())
    return {
        "file_settled_to_registered": _p(per_file),
        "group_last_settled_to_convert_job": _p(to_job),
        "settle_wait": _p(settle),
        "group_last_written_to_convert_job": _p(end_to_end),
        "files_found_by_scan_only": stats["files_found_by_scan_only"],
        "event_hints": stats["event_hints"],
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        ("file settled -> file+group row committed", "file_settled_to_registered"),
        ("16th subband settled -> convert job committed", "group_last_settled_to_convert_job"),
        ("settle wait (written -> settled)", "settle_wait"),
        ("16th subband written -> convert job committed", "group_last_written_to_convert_job"),
    ]
    lines = ["| database | latency | n | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|---|"]
    for db, res in results.items():
        for label, key in rows:
            r = res[key]
            lines.append(
                f"| {db} | {label} | {r['n']} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--cadence", type=float, default=3.0)
    ap.add_argument("--antennas", type=int, default=16)
    ap.add_argument("--channels", type=int, default=48)
    ap.add_argument("--pg-url", help="existing empty PostgreSQL database (default: start one)")
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        groups = simulate(Path(tmp) / "library", args.groups, args.antennas, args.channels)
        size = groups[0][0].stat().st_size
        files = [f for g in groups for f in g]
        t0 = time.perf_counter()
        for f in files:
            file_checksum(f)
        xxh_mb_s = len(files) * size / 1e6 / (time.perf_counter() - t0)
        print(
            f"{len(files)} files of {size / 1e6:.1f} MB; xxh64 {xxh_mb_s:.0f} MB/s (page cache)",
            file=sys.stderr,
        )
        results["SQLite"] = run_one(f"sqlite:///{tmp}/registry.sqlite3", groups, args)
        print(json.dumps(results["SQLite"]), file=sys.stderr)
        if args.pg_url:
            results["PostgreSQL"] = run_one(args.pg_url, groups, args)
        else:
            sys.path.insert(0, str(REPO))
            from tests.pgserver import PgServer, find_pg_bin

            bin_dir = find_pg_bin()
            if bin_dir is None:
                raise SystemExit("no PostgreSQL binaries; pass --pg-url")
            with PgServer(bin_dir) as server:
                results["PostgreSQL 15 (fsync=off test server)"] = run_one(
                    server.create_database("ingest"), groups, args
                )
    print(table(results))
    summary = {"file_bytes": size, "xxh64_mb_per_s": round(xxh_mb_s), "settle_s": args.settle}
    print(json.dumps({**summary, **results}, indent=2))


if __name__ == "__main__":
    main()
