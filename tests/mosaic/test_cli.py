"""``dsa-stream mosaic plan`` and ``dsa-stream mosaic build``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsa_stream.cli.main import cli
from tests.mosaic.conftest import Strip
from tests.mosaic.test_planner import built, grp


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DSA_STREAM_") and key != "DSA_STREAM_CASA_DIR":
            monkeypatch.delenv(key)


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.stdout


def test_plan_json_and_table(tmp_path: Path) -> None:
    groups = [grp(i).model_dump(mode="json") for i in range(12)]
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(groups[::-1]))  # order of the list does not matter
    code, out = run("mosaic", "plan", "--groups", str(path), "--json")
    assert code == 0, out
    doc = json.loads(out)
    first, tail = doc["windows"]
    assert first["status"] == "ready" and first["state"] == "ready" and first["version"] == 1
    assert first["window_key"] == groups[0]["group_key"] and len(first["members"]) == 10
    assert tail["state"] == "open" and tail["reasons"][0]["kind"] == "incomplete"
    code, out = run("mosaic", "plan", "--groups", str(path), "--stride", "10")
    assert code == 0 and "mosaic windows" in out and "ready" in out and "waiting" in out


def test_plan_with_previous_windows(tmp_path: Path) -> None:
    from dsa_stream.mosaic.planner import plan_windows

    gs = [grp(i) for i in range(12)]
    prev = built(plan_windows(gs[1:]))
    doc = {
        "groups": [g.model_dump(mode="json") for g in gs],
        "previous": [p.model_dump(mode="json") for p in prev],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    code, out = run("mosaic", "plan", "--groups", str(path), "--json")
    assert code == 0, out
    (w,) = [w for w in json.loads(out)["windows"] if w["status"] == "ready"]
    assert w["version"] == 2 and w["changes"] == [f"late member {gs[0].group_key}"]


def test_plan_rejects_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"group_key": "nope"}]))
    res = CliRunner().invoke(cli, ["mosaic", "plan", "--groups", str(path)])
    assert res.exit_code != 0 and "invalid group" in str(res.exception)


def test_build(strip55: Strip, tmp_path: Path) -> None:
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps([s.model_dump() for s in strip55.sources]))
    pairs = [f"{t.image_path}:{t.beam_path}" for t in strip55.tiles]  # paths hold colons too
    out = tmp_path / "cli" / "mosaic_test"
    code, text = run(
        "mosaic", "build", *pairs, "--out", str(out), "--expected", str(expected), "--json"
    )
    assert code == 0, text
    doc = json.loads(text)
    assert doc["mosaic_path"] == str(out) + ".fits" and Path(doc["preview_path"]).is_file()
    assert len(doc["tiles"]) == 4 and doc["window_key"] == strip55.tiles[0].group_key
    qa = doc["qa"]
    assert qa["n_sources_checked"] == qa["n_sources_found"] == len(strip55.sources)
    assert qa["failures"] == ["members 4 < 10"]  # the default QA wants 10 images
    assert doc["config_hash"] and all(t["rms_source"] == "robust" for t in doc["tiles"])
    code, text = run("mosaic", "build", *pairs, "--out", str(out))
    assert code == 0 and "FAILED: members 4 < 10" in text


def test_build_rejects_a_missing_beam(strip55: Strip, tmp_path: Path) -> None:
    tile = strip55.tiles[0]
    res = CliRunner().invoke(
        cli, ["mosaic", "build", f"{tile.image_path}:{tmp_path}/none.fits", "--out", "x"]
    )
    assert res.exit_code == 2 and "IMAGE:BEAM" in res.output
