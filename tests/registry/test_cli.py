"""``dsa-stream db``, ``registry`` and ``jobs`` commands (CliRunner), on both databases."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dsa_stream.cli.main import cli
from dsa_stream.exceptions import RegistryError
from dsa_stream.registry import (
    FileFacts,
    JobKind,
    JobSpec,
    JobStore,
    ProductSpec,
    head_revision,
    make_engine,
    register_file,
)
from dsa_stream.registry.migrate import schema_status

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DSA_STREAM_") and key != "DSA_STREAM_CASA_DIR":
            monkeypatch.delenv(key)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def config_for(tmp_path: Path, url: str) -> str:
    cfg = tmp_path / "dsa-stream.yaml"
    cfg.write_text(f"version: 1\nregistry:\n  url: {url}\n")
    return str(cfg)


def test_db_upgrade_and_current_on_a_fresh_sqlite_site(tmp_path: Path) -> None:
    cfg = config_for(tmp_path, "sqlite:///db/registry.sqlite3")
    res = run("--config", cfg, "db", "current", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["current"] is None and doc["up_to_date"] is False
    assert not (tmp_path / "db" / "registry.sqlite3").exists()  # looking creates nothing
    res = run("--config", cfg, "db", "upgrade")
    head = head_revision()
    assert res.exit_code == 0 and f"(empty) -> {head}" in res.stdout
    res = run("--config", cfg, "--json", "db", "upgrade")
    assert json.loads(res.stdout)["from"] == head
    res = run("--config", cfg, "db", "current")
    assert head in res.stdout and "up to date" in res.stdout


@pytest.mark.postgres
def test_db_upgrade_on_postgres(tmp_path: Path, pg_url: str) -> None:
    cfg = config_for(tmp_path, pg_url)
    assert json.loads(run("--config", cfg, "db", "current", "--json").stdout)["current"] is None
    res = run("--config", cfg, "db", "upgrade", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["to"] == head_revision() and doc["url"].startswith("postgresql+psycopg://")


def test_init_runs_the_migrations(tmp_path: Path) -> None:
    res = run("init", str(tmp_path / "site"), "--json")
    assert res.exit_code == 0, res.output
    engine = make_engine(f"sqlite:///{tmp_path / 'site' / 'registry.sqlite3'}")
    assert schema_status(engine).up_to_date
    engine.dispose()


def test_queries_refuse_a_missing_registry(tmp_path: Path) -> None:
    res = run("--config", config_for(tmp_path, "sqlite:///none.sqlite3"), "registry", "groups")
    assert res.exit_code == 1
    assert isinstance(res.exception, RegistryError) and "db upgrade" in str(res.exception)


def _populate(db_url: str, facts: Callable[..., FileFacts]) -> dict[str, Any]:
    clock_now = [T0]
    store = JobStore(make_engine(db_url), clock=lambda: clock_now[0])
    from dsa_stream.registry import WorkerIdentity

    wid = store.start_worker(WorkerIdentity.current("cfg")).worker_id
    for sb in range(16):
        reg = register_file(store, facts(T0, sb))
    for sb in range(3):
        register_file(store, facts(T0 + timedelta(minutes=5), sb))
    register_file(store, facts(T0, 2, rel_path="dup.hdf5", checksum="x", size=1))
    claim = store.claim(wid)
    assert claim is not None
    clock_now[0] = T0 + timedelta(seconds=90)
    product = ProductSpec(
        kind="ms",
        logical_key=f"ms:{reg.group_key}",
        root_id="staging",
        rel_path="a.ms",
        manifest_hash="m",
        obs_start=T0,
        obs_end=T0 + timedelta(minutes=5),
        group_id=reg.group_id,
    )
    store.complete(
        claim,
        products=[product],
        next_jobs=[
            JobSpec(kind=JobKind.IMAGE, dedupe_key="image:a", order_key=T0, group_id=reg.group_id)
        ],
    )
    dead = store.enqueue(JobSpec(kind=JobKind.MOSAIC, dedupe_key="mosaic:w", order_key=T0))
    image = store.claim(wid)
    assert image is not None and image.kind == "mosaic"
    store.fail(image, "no images", permanent=True)
    running = store.claim(wid)
    assert running is not None
    store.heartbeat(running, progress=0.4)
    store.close()
    return {"group": reg.group_key, "dead": dead.job_id, "running": running.job_id, "worker": wid}


def test_registry_queries(tmp_path: Path, db_url: str, facts: Callable[..., FileFacts]) -> None:
    ids = _populate(db_url, facts)
    cfg = config_for(tmp_path, db_url)

    def query(*args: str) -> Any:
        res = run("--config", cfg, "registry", *args, "--json")
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    groups = query("groups")
    assert [g["state"] for g in groups] == ["collecting", "processing"]  # newest first
    assert query("groups", "--state", "processing")[0]["group_key"] == ids["group"]
    assert query("groups", "--since", "2026-01-01T00:01:00") == [groups[0]]
    assert query("groups", "--until", "2026-01-01T00:01:00+00:00") == [groups[1]]
    files = query("files", "--group", ids["group"])
    assert len(files) == 17 and {f["state"] for f in files} == {"registered", "quarantined"}
    assert len(query("files", "--state", "quarantined")) == 1
    jobs = query("jobs")
    assert {(j["kind"], j["state"]) for j in jobs} == {
        ("convert", "succeeded"),
        ("image", "running"),
        ("mosaic", "dead"),
    }
    assert [j["kind"] for j in query("jobs", "--kind", "convert", "--state", "succeeded")] == [
        "convert"
    ]
    assert {j["kind"] for j in query("jobs", "--group", ids["group"])} == {"convert", "image"}
    workers = query("workers")
    assert workers[0]["id"] == ids["worker"] and workers[0]["state"] == "active"
    assert workers[0]["heartbeat_age_s"] > 0 and workers[0]["current_job_id"] == ids["running"]
    assert query("products", "--kind", "ms")[0]["group_key"] == ids["group"]
    stats = query("stats")
    assert stats["dead_letter"] == 1 and stats["jobs_by_state"]["dead"] == 1
    assert stats["health"]["status"] in ("degraded", "failing")
    assert any("dead letter" in r for r in stats["health"]["reasons"])
    assert [d["kind"] for d in stats["durations"]] == ["convert"]
    assert stats["durations"][0]["p50_s"] == pytest.approx(90.0)
    assert stats["running"][0]["id"] == ids["running"] and stats["running"][0]["progress"] == 0.4
    for sub in ("groups", "files", "jobs", "workers", "products", "stats"):
        res = run("--config", cfg, "registry", sub)
        assert res.exit_code == 0 and res.stdout.strip(), (sub, res.output)
    table = run("--config", cfg, "registry", "stats").stdout
    assert "health:" in table and "dead letter: 1" in table


def test_jobs_retry_cancel_show(
    tmp_path: Path, db_url: str, facts: Callable[..., FileFacts]
) -> None:
    ids = _populate(db_url, facts)
    cfg = config_for(tmp_path, db_url)

    def jobs(*args: str) -> Result:
        return run("--config", cfg, "jobs", *args)

    dead_letter = json.loads(jobs("dead-letter", "--json").stdout)
    assert [d["id"] for d in dead_letter] == [ids["dead"]]
    res = jobs(
        "retry", str(ids["dead"]), "--reason", "images arrived", "--actor", "alice", "--json"
    )
    assert res.exit_code == 0, res.output
    new_id = json.loads(res.stdout)["new_job_id"]
    assert json.loads(jobs("dead-letter", "--json").stdout) == []
    shown = json.loads(jobs("show", str(ids["dead"]), "--json").stdout)
    assert shown["job"]["state"] == "dead"
    assert "retried by alice" in shown["events"][-1]["detail"]
    assert (
        json.loads(jobs("show", str(new_id), "--json").stdout)["job"]["requeue_of"] == ids["dead"]
    )
    res = jobs("retry", str(new_id))
    assert res.exit_code == 1 and "only dead or cancelled" in str(res.exception)
    assert "cancelled" in jobs("cancel", str(new_id)).stdout
    assert "already cancelled" in jobs("cancel", str(new_id)).stdout
    res = jobs("cancel", str(ids["running"]), "--json")
    assert json.loads(res.stdout)["outcome"] == "cancel_requested"
    assert jobs("show", str(ids["running"])).exit_code == 0
    res = jobs("show", "9999")
    assert res.exit_code == 1 and "no job" in str(res.exception)
