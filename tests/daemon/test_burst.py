"""``dsa-stream run --burst``: an empty site, and a simulated group through the real stages.

The group is tiny (4 antennas, 1 channel per subband, no calibrator in the beam), so
the real ``convert`` handler writes a Measurement Set in a child process and the real
``calibrate`` handler finds no valid tables: the group waits for calibration (policy
``wait``) and no image job exists yet. The job logs are JSON lines carrying the group
key and job id; ``dsa-stream logs --group`` finds both stages' logs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from dsa_stream.cli.main import cli
from dsa_stream.daemon.health import read_registry
from dsa_stream.daemon.metrics import render
from dsa_stream.registry.models import groups
from dsa_stream.simulate import SimulationOptions, simulate_night

from .conftest import T0, DaemonSite


@pytest.fixture(scope="session")
def one_group(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Path]]:
    out = tmp_path_factory.mktemp("one_group")
    result = simulate_night(
        SimulationOptions(
            out_dir=out, n_groups=1, antennas=4, channels_per_subband=1, seed=3, start=T0
        )
    )
    group = result.groups[0]
    return group.key, [out / name for name in group.files]


def run(site: DaemonSite, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["--config", str(site.config), *args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout


def test_burst_on_an_empty_site_exits_0(make_site) -> None:
    site: DaemonSite = make_site()
    code, out = run(site, "run", "--burst", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["mode"] == "burst" and report["reason"] == "burst: nothing left"
    assert report["ingest"]["registered"] == 0
    assert [w.state for w in site.workers()] == ["stopped"]
    status = json.loads((site.root / ".dsa-stream-run.status.json").read_text())
    assert status["phase"] == "stopped" and status["mode"] == "burst"


@pytest.mark.casa
def test_burst_converts_and_calibrates_a_simulated_group(
    make_site, one_group: tuple[str, list[Path]]
) -> None:
    key, files = one_group
    site: DaemonSite = make_site(logging={"format": "json"})
    for f in files:
        shutil.copyfile(f, site.incoming / f.name)

    code, out = run(site, "run", "--burst", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ingest"]["registered"] == 16 and report["ingest"]["groups_completed"] == 1
    jobs = sorted(site.jobs().values(), key=lambda j: j.id)
    assert [(j.kind, j.state, j.attempt) for j in jobs] == [
        ("convert", "succeeded", 1),
        ("calibrate", "succeeded", 1),
    ]
    with site.store.engine.connect() as conn:
        group = conn.execute(select(groups).where(groups.c.group_key == key)).one()
        view = read_registry(conn, site.settings)
    assert (group.state, group.stage) == ("processing", "awaiting_calibration")

    # Structured job logs: JSON lines with the group key and the job id.
    logs = sorted((site.root / "logs" / "jobs").glob("job-*.log"))
    assert [p.name for p in logs] == [
        f"job-{jobs[0].id}-convert-a1.log",
        f"job-{jobs[1].id}-calibrate-a1.log",
    ]
    records = [json.loads(line) for line in logs[0].read_text().splitlines() if line[:1] == "{"]
    assert records and all(r["job_id"] == jobs[0].id for r in records)
    assert any(r.get("group_key") == key for r in records)
    code, out = run(site, "logs", "--group", key, "-n", "0")
    assert code == 0 and f"[job-{jobs[0].id}-convert-a1]" in out
    assert f"[job-{jobs[1].id}-calibrate-a1]" in out

    # The registry figures /metrics exposes.
    text = render(None, view, "ok")
    assert 'dsa_stream_groups{state="processing"} 1' in text
    assert 'dsa_stream_products{kind="ms",state="committed"} 1' in text
    assert 'dsa_stream_jobs{kind="calibrate",state="succeeded"} 1' in text

    # A second burst finds nothing new to do.
    code, out = run(site, "run", "--burst", "--json")
    assert code == 0 and json.loads(out)["ingest"]["registered"] == 0
    assert len(site.jobs()) == 2
