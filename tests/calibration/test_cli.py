"""``dsa-stream calibrate find-transits / solve / apply`` and ``registry caltables``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from casacore import tables
from click.testing import CliRunner, Result

from dsa_stream.cli.main import cli
from dsa_stream.conversion import convert_group

from .conftest import FIELDS, Night


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DSA_STREAM_") and key != "DSA_STREAM_CASA_DIR":
            monkeypatch.delenv(key)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_find_transits(night: Night) -> None:
    res = run("calibrate", "find-transits", "--json", str(night.raw))
    assert res.exit_code == 0, res.output
    reports = json.loads(res.stdout)
    assert [r["calibrator"] for r in reports] == [None, "3C147", None]
    cal = reports[1]["sources"][0]
    assert cal["name"] == "3C147" and cal["transit_in_group"] and cal["usable"]
    res = run("calibrate", "find-transits", *map(str, night.files(1)), "--min-flux", "50")
    assert res.exit_code == 0 and "no calibrator" in res.stdout and "3C147" in res.stdout
    res = run("calibrate", "find-transits", str(night.raw / "missing"))
    assert res.exit_code == 2


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clisite")
    cfg = root / "dsa-stream.yaml"
    cfg.write_text(
        "version: 1\nregistry:\n  url: sqlite:///registry.sqlite3\n"
        "calibrate:\n  gain_validity_hours: 0.2\n  plots: false\n  qa:\n    min_antennas: 10\n"
    )
    assert run("--config", str(cfg), "db", "upgrade").exit_code == 0
    return cfg


@pytest.mark.casa
def test_solve_registers_and_apply_selects(
    night: Night, site: Path, calibrator_ms: Path, tmp_path: Path
) -> None:
    cfg = str(site)
    # an MS already phased to the calibrator is copied into the set (not rephased)
    res = run(
        "--config",
        cfg,
        "calibrate",
        "solve",
        str(calibrator_ms),
        "--calibrator",
        "3c147",
        "--refant",
        "25",
        "--json",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    set_name = out["set_name"]
    assert set_name == f"{night.truth.group(1).key}_3C147" and out["qa"]["passed"]
    assert out["registered"]["version"] == 1 and out["registered"]["status"] == "valid"
    assert out["refant"] == "25" and out["refant_candidates"] == ["25"] and out["plots"] == []
    assert out["inputs"] == [str(calibrator_ms)]
    assert (
        Path(out["tables"][1]["path"]).parent == site.parent / "products" / "caltables" / set_name
    )
    listed = json.loads(run("--config", cfg, "registry", "caltables", "--json").stdout)
    assert [c["set_name"] for c in listed] == [set_name]
    gain = next(t for t in listed[0]["tables"] if t["table_type"] == "gain")
    assert gain["status"] == "valid" and gain["window"]["valid_to"] > gain["window"]["valid_from"]
    table = run("--config", cfg, "registry", "caltables")
    assert table.exit_code == 0 and "3C147" in table.stdout

    # group 1 is covered: the registered set is selected and applied
    ms1 = convert_group(night.files(1), tmp_path / "g1.ms", FIELDS).ms_path
    res = run("--config", cfg, "calibrate", "apply", str(ms1), "--json")
    assert res.exit_code == 0, res.output
    applied = json.loads(res.stdout)
    assert applied["set_name"] == set_name and applied["data_column"] == "CORRECTED_DATA"
    assert [Path(t).suffix for t in applied["tables"]] == [".B", ".G"]
    with tables.table(str(ms1), ack=False) as tb:
        assert "CORRECTED_DATA" in tb.colnames()

    # group 2 is 25 min later, outside the 0.2 h gain window: nothing to apply (exit 3)
    ms2 = convert_group(night.files(2), tmp_path / "g2.ms", FIELDS).ms_path
    res = run("--config", cfg, "calibrate", "apply", str(ms2))
    assert res.exit_code == 3
    assert "no valid calibration covers" in res.stderr and "gain window" in res.stderr
    res = run(
        "--config",
        cfg,
        "calibrate",
        "apply",
        str(ms2),
        "--tables",
        applied["tables"][1],
        "--tables",
        applied["tables"][0],
    )
    assert res.exit_code == 0 and "CORRECTED_DATA" in res.stdout
