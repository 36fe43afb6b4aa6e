"""``dsa-stream demo``: init + simulate + summary, and reuse on a second run."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from dsa_stream.cli.main import cli


def test_demo_small_night_and_rerun_reuses(tmp_path: Path) -> None:
    site = tmp_path / "demo"
    args = [
        "--json",
        "demo",
        str(site),
        "--groups",
        "2",
        "--antennas",
        "6",
        "--channels-per-subband",
        "2",
    ]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["reused_existing_simulation"] is False
    assert doc["calibrator"] == "3C147"
    assert [g["calibrator_transit"] for g in doc["groups"]] == [False, True]
    assert all(g["files"] == 16 for g in doc["groups"])
    incoming = site / "night"
    assert len(list(incoming.glob("*_sb??.hdf5"))) == 32
    assert (site / "dsa-stream.yaml").is_file() and (incoming / "truth.json").is_file()
    second = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert second.exit_code == 0
    assert json.loads(second.stdout)["reused_existing_simulation"] is True
    # Different options: the night is simulated again, not silently reused.
    third = CliRunner().invoke(cli, [*args[:-1], "4"], catch_exceptions=False)
    doc3 = json.loads(third.stdout)
    assert doc3["reused_existing_simulation"] is False and doc3["channels_per_subband"] == 4
