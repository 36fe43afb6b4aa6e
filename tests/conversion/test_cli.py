"""``dsa-stream convert``."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dsa_stream.cli.main import cli


def test_convert_json(small_group, tmp_path):
    out = tmp_path / "cli.ms"
    args = ["convert", *map(str, small_group[0]), "--out", str(out), "--channel-average", "2"]
    args += ["--casatools-check", "off", "--casacore35-check", "off", "--json"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["n_channels"] == 32 and doc["mode"] == "midpoint" and not doc["adopted"]
    assert doc["meridian_centres"] == 24 and out.is_dir()
    again = CliRunner().invoke(cli, args[:-1], catch_exceptions=False)
    assert again.exit_code == 0 and "adopted existing" in again.stdout


def test_convert_bad_input_is_one_clear_line(tmp_path):
    from dsa_stream.cli.main import main

    bad = tmp_path / "2025-10-02T00:00:00_sb00.hdf5"
    bad.write_text("x")
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["convert", str(bad), "--out", str(tmp_path / "o.ms")])
    assert exc.value.code == 1


def test_convert_help_lists_options():
    res = CliRunner().invoke(cli, ["convert", "--help"])
    for opt in ("--out", "--channel-average", "--mode", "--apply", "--json", "--phase-center"):
        assert opt in res.output
