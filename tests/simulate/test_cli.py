"""``dsa-stream simulate`` from the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dsa_stream.cli.main import cli, main


def test_simulate_json_output_parses(tmp_path):
    out = tmp_path / "night"
    args = [
        "--json",
        "simulate",
        str(out),
        "--groups",
        "2",
        "--antennas",
        "4",
        "--channels-per-subband",
        "1",
        "--seed",
        "9",
        "--calibrator",
        "3C48",
        "--calibrator-group",
        "1",
        "--no-noise",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["files"] == 32 and len(doc["groups"]) == 2
    assert doc["calibrator_group"] == 1
    assert doc["groups"][1]["calibrator_transit"] is True
    assert doc["total_bytes"] == sum(p.stat().st_size for p in out.glob("*.hdf5"))
    assert (out / "truth.json").exists()
    truth = json.loads((out / "truth.json").read_text())
    assert truth["noise"]["enabled"] is False
    assert [g["key"] for g in truth["groups"]] == [g["key"] for g in doc["groups"]]


def test_simulate_table_output(tmp_path):
    args = [
        "simulate",
        str(tmp_path / "n"),
        "--antennas",
        "3",
        "--channels-per-subband",
        "1",
        "--start",
        "2025-10-03T01:02:03Z",
        "--dec",
        "16.27",
        "--write-mode",
        "rename",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "2025-10-03T01:02:03" in result.stdout
    assert "files" in result.stdout


def test_bad_options_give_one_clear_error_line(tmp_path, capsys):
    code = None
    try:
        main(["simulate", str(tmp_path / "x"), "--channels-per-subband", "5"])
    except SystemExit as exc:
        code = exc.code
    assert code == 1
    err = capsys.readouterr().err
    assert "error: invalid simulation options: channels_per_subband" in err
    try:
        main(["simulate", str(tmp_path / "y"), "--antennas", "3", "--calibrator", "nosuch"])
    except SystemExit as exc:
        code = exc.code
    assert code == 1
    assert "unknown calibrator 'nosuch'" in capsys.readouterr().err


def test_bad_start_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["simulate", str(tmp_path), "--start", "yesterday"])
    assert result.exit_code == 2
    assert "not an ISO 8601 time" in result.output
