"""``dsa-stream ingest`` (--once with JSON, and the watcher loop with a signal) and the
registry commands that show rejected files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dsa_stream.cli.main import cli
from dsa_stream.registry import make_engine
from dsa_stream.registry.migrate import current_revision, head_revision

from .conftest import Library, wait_for


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DSA_STREAM_") and key != "DSA_STREAM_CASA_DIR":
            monkeypatch.delenv(key)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def make_site(root: Path, url: str, library: Library) -> str:
    incoming = root / "incoming"
    incoming.mkdir(parents=True)
    for sb in range(16):
        (incoming / library.path(0, sb).name).write_bytes(library.path(0, sb).read_bytes())
    (incoming / library.path(1, 0).name).write_bytes(library.path(1, 0).read_bytes()[:9000])
    (incoming / "truth.json").write_text("{}")
    cfg = root / "dsa-stream.yaml"
    cfg.write_text(
        f"version: 1\nregistry:\n  url: {url}\nwatcher:\n  settle_s: 0\n  validation_grace_s: 0\n"
    )
    return str(cfg)


def test_ingest_once_json_and_idempotent_second_run(
    tmp_path: Path, db_url: str, library: Library
) -> None:
    cfg = make_site(tmp_path, db_url, library)
    res = run("--config", cfg, "ingest", "--once", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["files_seen"] == 17 and doc["registered"] == 16 and doc["ignored"] == 1
    assert [g["group_key"] for g in doc["groups_completed"]] == [library.keys[0]]
    assert len(doc["jobs_enqueued"]) == 1
    (rejected,) = doc["rejected"]
    assert rejected["rel_path"] == library.path(1, 0).name and rejected["retryable"] is True
    assert "truncated" in rejected["reason"]
    again = run("--config", cfg, "ingest", "--once", "--json")
    assert again.exit_code == 0, again.output
    doc2 = json.loads(again.stdout)
    assert doc2["unchanged"] == 17 and doc2["registered"] == 0
    for key in ("rejected", "quarantined", "groups_completed", "jobs_enqueued", "pending_retry"):
        assert doc2[key] == [], key
    table = run("--config", cfg, "ingest", "--once")
    assert table.exit_code == 0 and "unchanged" in table.stdout


def test_ingest_once_fails_without_the_incoming_directory(tmp_path: Path) -> None:
    cfg = tmp_path / "dsa-stream.yaml"
    cfg.write_text(f"version: 1\nregistry:\n  url: sqlite:///{tmp_path / 'r.sqlite3'}\n")
    res = run("--config", str(cfg), "ingest", "--once")
    assert res.exit_code == 1 and "cannot list" in str(res.exception)


def test_registry_shows_rejected_files(tmp_path: Path, db_url: str, library: Library) -> None:
    cfg = make_site(tmp_path, db_url, library)
    assert run("--config", cfg, "ingest", "--once").exit_code == 0
    res = run("--config", cfg, "registry", "files", "--state", "rejected", "--json")
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert row["rel_path"] == library.path(1, 0).name and row["state"] == "rejected"
    assert "truncated" in row["reason"] and row["root_id"] == "incoming"
    table = run("--config", cfg, "registry", "files", "--state", "rejected")
    assert table.exit_code == 0 and "rejected files" in table.stdout
    stats = json.loads(run("--config", cfg, "registry", "stats", "--json").stdout)
    assert stats["files_rejected"] == 1
    assert any("rejected" in r for r in stats["health"]["reasons"])
    bad = run("--config", cfg, "registry", "files", "--state", "rejected", "--group", "x")
    assert bad.exit_code == 2
    assert run("--config", cfg, "registry", "files", "--all-versions").exit_code == 2
    every = run("--config", cfg, "registry", "files", "--state", "rejected", "--all-versions")
    assert every.exit_code == 0


def test_ingest_watches_until_sigterm(tmp_path: Path, library: Library) -> None:
    """The watcher loop in a real process: migrates a fresh registry, registers files
    that arrive while it runs, stops on SIGTERM with exit code 0 and its counters."""
    db = tmp_path / "registry.sqlite3"
    (tmp_path / "incoming").mkdir()
    cfg = tmp_path / "dsa-stream.yaml"
    cfg.write_text(f"version: 1\nregistry:\n  url: sqlite:///{db}\nwatcher:\n  settle_s: 0.2\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsa_stream.cli.main", "--config", str(cfg), "ingest", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("DSA_STREAM_CONFIG")},
    )
    try:
        head = head_revision()
        assert wait_for(lambda: db.exists() and current_revision(_engine(db)) == head, 60)
        time.sleep(0.5)
        for sb in range(16):
            (tmp_path / "incoming" / library.path(0, sb).name).write_bytes(
                library.path(0, sb).read_bytes()
            )
        assert wait_for(lambda: _count(db, "input_files") == 16, 30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    counters = json.loads(out)
    assert counters["registered"] == 16 and counters["groups_completed"] == 1
    assert "stopping after the current file" in err


def _engine(db: Path):  # type: ignore[no-untyped-def]
    return make_engine(f"sqlite:///{db}", write=False)


def _count(db: Path, table: str) -> int:
    engine = _engine(db)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
    finally:
        engine.dispose()
