"""Offline CASA: importing through dsa_stream works with no network and any argv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import json, os, sys
import dsa_stream.casa_env as ce
tools = ce.casatools()
tasks = ce.casatasks()
import casaconfig.config as cfg
me = tools.measures()
# A measures conversion that needs IERS/leap-second data from casadata.
ep = me.epoch("utc", "2025-10-02T00:00:00")
me.doframe(me.observatory("VLA"))
tai = me.measure(ep, "tai")
dsa = me.measure(me.observatory("DSA_110"), "ITRF")
ovro = me.measure(me.observatory("OVRO_MMA"), "ITRF")
print(json.dumps({
    "dsa_110_xyz": [float(v) for v in me.addxvalue(dsa)["value"]],
    "ovro_radius_m": ovro["m2"]["value"],
    "siteconfig": os.environ["CASASITECONFIG"],
    "measurespath": cfg.measurespath,
    "auto": [cfg.measures_auto_update, cfg.data_auto_update],
    "tai_minus_utc_s": (tai["m0"]["value"] - ep["m0"]["value"]) * 86400.0,
    "has_tclean": hasattr(tasks, "tclean"),
    "argv": sys.argv[1:],
    "astropy_internet": __import__("astropy.utils.data", fromlist=["conf"]).conf.allow_internet,
}))
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DSA_STREAM_CASA_DIR"] = str(tmp_path / "casa")
    env["HOME"] = str(tmp_path / "home")  # nothing may come from or go to ~/.casa
    return env


@pytest.mark.casa
def test_casa_imports_offline_with_hostile_argv(tmp_path: Path) -> None:
    """No network namespace, our own CLI flags in argv: casatools/casatasks still work."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to cut the network")
    cut = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    if cut.returncode != 0:
        pytest.fail(f"cannot create a network namespace here: {cut.stderr!r}")
    argv = ["--config", "site.yaml", "--n", "3", "--nositeconfig-not-really"]
    cmd = ["unshare", "-n", sys.executable, "-c", PROBE, *argv]
    out = _run(cmd, tmp_path, _env(tmp_path))
    import casadata
    from astropy import units as u
    from astropy.coordinates import EarthLocation

    from dsa_stream import instrument

    overlay = Path(str(out["measurespath"]))
    assert overlay.parent == tmp_path / "casa" and overlay.name.startswith("measures-")
    # Everything but the corrected Observatories table comes straight from casadata.
    assert (overlay / "geodetic" / "TAI_UTC").resolve() == (
        Path(casadata.datapath) / "geodetic" / "TAI_UTC"
    ).resolve()
    site = EarthLocation.from_geodetic(
        instrument.SITE_LON_DEG * u.deg,
        instrument.SITE_LAT_DEG * u.deg,
        instrument.SITE_ALT_M * u.m,
    )
    expected = [site.x.to_value(u.m), site.y.to_value(u.m), site.z.to_value(u.m)]
    assert max(abs(a - b) for a, b in zip(out["dsa_110_xyz"], expected, strict=True)) < 1.0
    # casadata's OVRO_MMA row puts the site near the geocentre; ours is on the surface.
    assert 6.36e6 < float(out["ovro_radius_m"]) < 6.38e6
    assert out["auto"] == [False, False]
    assert out["siteconfig"] == str(tmp_path / "casa" / "casasiteconfig.py")
    assert out["argv"] == argv  # our argv is restored for our own parser
    assert out["has_tclean"] is True
    assert out["astropy_internet"] is False
    assert 36.5 < float(out["tai_minus_utc_s"]) < 37.5  # 37 s since 2017
    # CASA's log goes to our directory, never to the working directory.
    assert not list(tmp_path.glob("casa-*.log"))
    assert (tmp_path / "casa" / "logs" / "casa.log").exists()
    assert not (tmp_path / "home" / ".casa").exists()


@pytest.mark.casa
def test_direct_casatasks_import_after_casa_env_is_argv_safe(tmp_path: Path) -> None:
    """Once dsa_stream.casa_env ran, a plain ``import casatasks`` cannot trip on argv."""
    code = (
        "import sys; sys.argv[1:] = ['--n', '--config', 'x'];"
        "import dsa_stream.casa_env; import casatasks, json; print(json.dumps({'ok': True}))"
    )
    out = _run([sys.executable, "-c", code], tmp_path, _env(tmp_path))
    assert out == {"ok": True}


def test_site_config_contents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsa_stream import casa_env

    path = casa_env.write_site_config(tmp_path)
    text = path.read_text()
    assert "measures_auto_update = False" in text
    assert "data_auto_update = False" in text
    scope: dict[str, object] = {}
    exec(compile(text, str(path), "exec"), scope)  # it is valid Python for casaconfig
    overlay = Path(str(scope["measurespath"]))
    assert overlay.parent == tmp_path
    assert (overlay / "geodetic" / "Observatories" / "table.dat").is_file()
    assert casa_env.measures_overlay(tmp_path) == overlay  # built once, then reused
    before = path.stat().st_mtime_ns
    casa_env.write_site_config(tmp_path)  # unchanged content: not rewritten
    assert path.stat().st_mtime_ns == before


def test_casa_user_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dsa_stream import casa_env

    monkeypatch.setenv("DSA_STREAM_CASA_DIR", str(tmp_path / "x"))
    assert casa_env.casa_user_dir() == tmp_path / "x"
    monkeypatch.delenv("DSA_STREAM_CASA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert casa_env.casa_user_dir() == tmp_path / "xdg" / "dsa-stream" / "casa"
