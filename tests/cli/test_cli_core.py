"""The dsa-stream command group: version, help, init, config show, errors, logging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsa_stream import __version__
from dsa_stream.cli.main import COMMANDS, cli

EXE = Path(sys.executable).with_name("dsa-stream")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DSA_STREAM_") and key != "DSA_STREAM_CASA_DIR":
            monkeypatch.delenv(key)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_version_and_help_list_every_command_without_importing_them() -> None:
    code, out, _ = run("--version")
    assert code == 0 and __version__ in out
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dsa_stream.cli.main import main; main(['--help'])\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout
    code = (
        "import sys\nfrom dsa_stream.cli.main import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('casatools' in sys.modules, 'pyuvdata' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "False False", "help must stay light"


def test_console_script_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(EXE), "--json", "init", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["config_written"] is True


def test_init_writes_a_ready_site_and_is_idempotent(tmp_path: Path) -> None:
    site = tmp_path / "site"
    code, out, _ = run("init", str(site), "--json")
    assert code == 0
    doc = json.loads(out)
    for name in ("incoming", "staging", "products", "logs", "quarantine"):
        assert (site / name).is_dir()
        assert doc["directories"][name] == str(site / name)
    cfg = site / "dsa-stream.yaml"
    assert doc["config"] == str(cfg)
    assert doc["registry"] == f"sqlite:///{site / 'registry.sqlite3'}"
    cfg.write_text(cfg.read_text().replace("level: INFO", "level: DEBUG"))
    code, out, _ = run("--json", "init", str(site))
    assert code == 0 and json.loads(out)["config_written"] is False
    assert "level: DEBUG" in cfg.read_text()  # an existing config is kept
    code, out, _ = run("--json", "init", "--force", str(site))
    assert json.loads(out)["config_written"] is True and "level: INFO" in cfg.read_text()


def test_config_show_reflects_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    run("init", str(site))
    cfg = str(site / "dsa-stream.yaml")
    monkeypatch.setenv("DSA_STREAM_PATHS__PRODUCTS", "/srv/products")
    code, out, _ = run("--config", cfg, "config", "show", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["paths"]["root"] == str(site)
    assert doc["paths"]["products"] == "/srv/products"
    assert doc["_resolved"]["config_file"] == cfg
    assert len(doc["_resolved"]["config_hash"]) == 16
    code, out, _ = run("--config", cfg, "--log-format", "json", "config", "show")
    assert code == 0 and "format: json" in out and out.startswith("# configuration file:")


def test_invalid_config_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 7\n")
    proc = subprocess.run(
        [str(EXE), "--config", str(bad), "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: invalid configuration")
    assert "Traceback" not in proc.stderr


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2


def test_verbosity_flags_and_json_logs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(EXE), "-v", "--log-format", "json", "init", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    lines = [json.loads(x) for x in proc.stderr.splitlines() if x.startswith("{")]
    assert any(rec["logger"] == "dsa_stream.site" and rec["level"] == "INFO" for rec in lines)
    proc = subprocess.run(
        [str(EXE), "-q", "init", str(tmp_path / "s2")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "site ready" not in proc.stderr


def test_version_command_json() -> None:
    code, out, _ = run("version", "--json")
    doc = json.loads(out)
    assert doc["dsa-stream"] == __version__
    assert doc["casatools"] == "6.7.0.31"
