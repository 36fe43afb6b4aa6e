"""``dsa-stream image``: the calibrated test field imaged from the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dsa_stream.cli.main import cli
from dsa_stream.exceptions import ConfigError, ImagingError
from dsa_stream.imaging.fitsio import KEYWORDS

from .conftest import Field


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DSA_STREAM_") and key != "DSA_STREAM_CASA_DIR":
            monkeypatch.delenv(key)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.wsclean
def test_image_command_with_the_simulation_truth(field: Field, tmp_path: Path) -> None:
    cfg = tmp_path / "dsa-stream.yaml"
    cfg.write_text("version: 1\nimage:\n  preview: false\n  qa:\n    min_snr: 20.0\n")
    truth = field.ms.parent / "raw" / "truth.json"
    out = tmp_path / "products" / "g"
    base = ["--config", str(cfg), "image", str(field.ms), "--out", str(out)]
    res = run(
        *base,
        *("--size", "1024", "--cell", "15", "--uv-max", "2000", "--niter", "20000"),
        *("--expected", str(truth), "--json"),
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["backend"] == "wsclean" and doc["qa_passed"], doc["qa_failed"]
    # the truth's sources of this group (not 3C48, which transits in the other group)
    assert doc["sources_checked"] == len(field.expected) == 7
    assert abs(doc["flux_ratio_median"] - 1.0) < 0.03
    assert doc["position_offset_median_beams"] < 0.1
    assert doc["files"]["preview"] is None and Path(doc["files"]["pbcor"]).exists()
    assert [Path(c["path"]).name for c in doc["calibration"]] == [p.name for p in field.caltables]
    assert (out.parent / "g.imaging.log").exists() and (out.parent / "g.image.json").exists()
    dirty = ("--size", "256", "--cell", "20", "--uv-max", "2000", "--niter", "0")
    text = run(*base, *dirty, "--backend", "wsclean")
    assert text.exit_code == 0, text.output
    assert "QA" in text.stdout and "rms (mJy/beam)" in text.stdout
    assert set(KEYWORDS) >= {"DSAGROUP", "CFGHASH"}


def test_image_command_errors(tmp_path: Path) -> None:
    res = run("image", str(tmp_path / "missing.ms"), "--out", str(tmp_path / "x"))
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "empty.ms").mkdir()
    res = CliRunner().invoke(
        cli, ["image", str(tmp_path / "empty.ms"), "--out", str(tmp_path / "x"), "--size", "33"]
    )
    assert isinstance(res.exception, ConfigError)
    assert "size_px: Value error, size_px must be even" in str(res.exception)
    res = CliRunner().invoke(
        cli, ["image", str(tmp_path / "empty.ms"), "--out", str(tmp_path / "x")]
    )
    assert isinstance(res.exception, ImagingError) and "cannot open" in str(res.exception)
