"""A stub worker process for the multi-process registry tests (run as a script).

It opens its own engine after start, registers itself, then loops: reap (when due),
claim, run a stub stage under a LeaseKeeper (sleep), complete. The completion writes
one row into ``test_outputs`` in the same transaction, so the test can count
completions per job. A completion refused by the lease fence writes a row into
``test_rejections`` instead. Unlike a production worker it *attempts* the
completion even after it noticed the lease loss: that is what proves the fence.

Exit codes: 0 drained (no queued or running job left), 3 the worker was declared dead.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from sqlalchemy import func, select, text

from dsa_stream.config import WorkerConfig
from dsa_stream.exceptions import LeaseLostError
from dsa_stream.registry import (
    Claim,
    JobStore,
    LeaseKeeper,
    Txn,
    WorkerIdentity,
    WorkerNotActiveError,
    make_engine,
)
from dsa_stream.registry.models import jobs


def _output(claim: Claim) -> object:
    def write(txn: Txn) -> None:
        txn.conn.execute(
            text("INSERT INTO test_outputs VALUES (:j, :t, :w)"),
            {"j": claim.job_id, "t": claim.lease_token, "w": claim.worker_id},
        )

    return write


def _reject(store: JobStore, claim: Claim, what: str) -> None:
    with store.transaction() as txn:
        txn.conn.execute(
            text("INSERT INTO test_rejections VALUES (:j, :t, :w, :what)"),
            {"j": claim.job_id, "t": claim.lease_token, "w": claim.worker_id, "what": what},
        )


def _run_stage(store: JobStore, claim: Claim, work_s: float) -> None:
    with LeaseKeeper(store, claim) as lease:
        deadline = time.monotonic() + work_s
        while time.monotonic() < deadline and not lease.lost.is_set():
            time.sleep(0.005)
    try:
        store.complete(claim, in_transaction=_output(claim))  # type: ignore[arg-type]
    except LeaseLostError:
        _reject(store, claim, "complete")


def _remaining(store: JobStore) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(jobs.c.state.in_(["queued", "running"]))
            ).scalar_one()
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--config", default="{}", help="WorkerConfig fields as JSON")
    ap.add_argument("--work-min", type=float, default=0.0, help="stage sleeps at least this")
    ap.add_argument("--work-max", type=float, default=0.0, help="stage sleeps at most this")
    ap.add_argument("--reap-every", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    store = JobStore(make_engine(args.url), WorkerConfig(**json.loads(args.config)))
    ident = WorkerIdentity.current("test-config")
    store.start_worker(ident)
    print(json.dumps({"worker_id": ident.id}), flush=True)
    next_reap = 0.0
    try:
        while True:
            if time.monotonic() >= next_reap:
                store.reap()
                next_reap = time.monotonic() + args.reap_every
            claim = store.claim(ident.id)
            if claim is None:
                if _remaining(store) == 0:
                    break
                time.sleep(0.02)
                continue
            _run_stage(store, claim, rng.uniform(args.work_min, max(args.work_min, args.work_max)))
    except WorkerNotActiveError:
        return 3
    store.stop_worker(ident.id, "drained")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
