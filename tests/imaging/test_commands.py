"""Imager calls built as data: WSClean argv, tclean parameters, version checks, timeouts."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from dsa_stream.exceptions import EnvironmentSetupError, ToolTimeoutError
from dsa_stream.imaging.options import ImagingOptions
from dsa_stream.imaging.tclean import tclean_call, tclean_params, uvrange
from dsa_stream.imaging.wsclean import (
    build_wsclean_cmd,
    check_wsclean,
    output_paths,
    parse_version,
)
from dsa_stream.toolrun import run_tool


def _args(argv: tuple[str, ...], flag: str, n: int = 1) -> list[str]:
    i = argv.index(flag)
    return list(argv[i + 1 : i + 1 + n])


def test_wsclean_defaults(tmp_path: Path) -> None:
    o = ImagingOptions()
    cmd = build_wsclean_cmd(Path("/d/g.ms"), tmp_path / "img", o, temp_dir=tmp_path / "t")
    argv = cmd.argv
    assert argv[0] == "wsclean" and argv[-1] == "/d/g.ms"
    assert _args(argv, "-size", 2) == [str(o.size_px)] * 2
    assert _args(argv, "-scale") == [f"{o.cell_arcsec:g}asec"]
    assert _args(argv, "-weight", 2) == ["briggs", f"{o.robust:g}"]
    assert _args(argv, "-mgain") == [f"{o.mgain:g}"] and o.mgain < 1.0
    assert _args(argv, "-niter") == [str(o.niter)]
    assert _args(argv, "-nmiter") == [str(o.max_major_cycles)]
    assert _args(argv, "-auto-threshold") == [f"{o.auto_threshold_sigma:g}"]
    assert _args(argv, "-auto-mask") == [f"{o.auto_mask_sigma:g}"]
    assert _args(argv, "-pol") == ["i"]
    assert _args(argv, "-temp-dir") == [str(tmp_path / "t")]
    # Never -no-reorder (it adds MODEL_DATA to the MS); never touch the model column.
    assert "-reorder" in argv and "-no-reorder" not in argv
    assert "-no-update-model-required" in argv
    # auto data column: WSClean picks CORRECTED_DATA if present, else DATA
    assert "-data-column" not in argv
    assert "-minuv-l" not in argv and "-maxuv-l" not in argv and "-j" not in argv
    assert ("-use-wgridder" in argv) == (o.wsclean_gridder == "wgridder")
    assert cmd.timeout_s == o.timeout_s and cmd.label == "wsclean"


def test_wsclean_every_option(tmp_path: Path) -> None:
    o = ImagingOptions(
        size_px=512,
        cell_arcsec=2.5,
        weighting="uniform",
        niter=123,
        mgain=0.5,
        threshold_jy=0.002,
        auto_threshold_sigma=None,
        auto_mask_sigma=None,
        uv_min_lambda=100.0,
        uv_max_lambda=2500.0,
        channels_out=4,
        data_column="CORRECTED_DATA",
        threads=2,
        memory_gb=8.0,
        wsclean_gridder="wstacking",
        timeout_s=99.0,
        wsclean_executable="/opt/bin/wsclean",
    )
    cmd = build_wsclean_cmd(Path("g.ms"), tmp_path / "x", o, temp_dir=tmp_path, log_path=tmp_path)
    argv = cmd.argv
    assert argv[0] == "/opt/bin/wsclean"
    assert _args(argv, "-weight") == ["uniform"]
    assert _args(argv, "-threshold") == ["0.002"]
    assert "-auto-threshold" not in argv and "-auto-mask" not in argv
    assert _args(argv, "-minuv-l") == ["100"] and _args(argv, "-maxuv-l") == ["2500"]
    assert _args(argv, "-channels-out") == ["4"] and "-join-channels" in argv
    assert _args(argv, "-data-column") == ["CORRECTED_DATA"]
    assert _args(argv, "-j") == ["2"] and _args(argv, "-abs-mem") == ["8"]
    assert "-use-wgridder" not in argv
    assert cmd.timeout_s == 99.0 and cmd.log_path == tmp_path
    outs = output_paths(tmp_path / "x", o)
    assert outs["image"].name == "x-MFS-image.fits" and outs["psf"].name == "x-MFS-psf.fits"
    assert output_paths(tmp_path / "x", ImagingOptions())["model"].name == "x-model.fits"


def test_tclean_mapping() -> None:
    o = ImagingOptions(
        backend="tclean",
        size_px=256,
        cell_arcsec=10.0,
        robust=-0.5,
        mgain=0.8,
        niter=1000,
        auto_threshold_sigma=1.5,
        auto_mask_sigma=None,
        max_major_cycles=7,
        uv_max_lambda=2000.0,
        data_column="DATA",
    )
    p = tclean_params(Path("/d/g.ms"), Path("/w/tc"), o)
    assert p["vis"] == "/d/g.ms" and p["imagename"] == "/w/tc"
    assert p["imsize"] == [256, 256] and p["cell"] == "10arcsec"
    assert p["weighting"] == "briggs" and p["robust"] == -0.5
    assert p["specmode"] == "mfs" and p["stokes"] == "I"
    assert p["minpsffraction"] == pytest.approx(0.2) and p["maxpsffraction"] == pytest.approx(0.2)
    assert p["nsigma"] == 1.5 and p["nmajor"] == 7 and p["niter"] == 1000
    assert p["uvrange"] == "<2000lambda" and p["datacolumn"] == "data"
    assert p["savemodel"] == "none" and p["pbcor"] is False and p["pblimit"] < 0
    assert p["gridder"] == "wproject" and p["wprojplanes"] == -1
    assert p["phasecenter"] == ""
    masked = tclean_params(Path("a"), Path("b"), o.model_copy(update={"auto_mask_sigma": 4.0}))
    assert masked["nsigma"] == 4.0  # tclean has no auto-mask: it stops at the mask level
    call = tclean_call(p)
    assert call[0] == "tclean" and "niter=1000" in call
    assert tclean_params(Path("a"), Path("b"), o, phasecenter="ICRS 1deg 2deg")["phasecenter"]
    auto = tclean_params(Path("a"), Path("b"), o.model_copy(update={"data_column": "auto"}))
    assert auto["datacolumn"] == "corrected"  # CASA falls back to DATA when it is absent


def test_uvrange_strings() -> None:
    assert uvrange(ImagingOptions()) == ""
    assert uvrange(ImagingOptions(uv_min_lambda=50.0)) == ">50lambda"
    assert uvrange(ImagingOptions(uv_min_lambda=50.0, uv_max_lambda=900.5)) == "50~900.5lambda"


def test_parse_version() -> None:
    text = "\nWSClean version 3.1.0 (2022-04-01)\nThis software package is released"
    assert parse_version(text) == (3, 1, 0)
    assert parse_version("WSClean version 2.10 (x)") == (2, 10, 0)
    assert parse_version("nothing") is None


def _fake_wsclean(directory: Path, body: str) -> Path:
    path = directory / "wsclean"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_check_wsclean_missing_and_too_old(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentSetupError, match="not found.*Debian package"):
        check_wsclean(str(tmp_path / "nope"))
    old = _fake_wsclean(tmp_path, 'echo "WSClean version 2.9.0 (2020-01-01)"')
    with pytest.raises(EnvironmentSetupError, match="too old"):
        check_wsclean(str(old))
    good = _fake_wsclean(tmp_path, 'echo "WSClean version 3.4.1 (2024-01-01)"')
    assert check_wsclean(str(good)) == "3.4.1"
    mute = _fake_wsclean(tmp_path, "echo hello")
    with pytest.raises(EnvironmentSetupError, match="did not report"):
        check_wsclean(str(mute))


def test_wsclean_command_times_out_and_is_killed(tmp_path: Path) -> None:
    """A hung imager is killed by the runner at the options' timeout."""
    pidfile = tmp_path / "pid"
    fake = _fake_wsclean(tmp_path, f'echo $$ > {pidfile}; echo "gridding..."; exec sleep 600')
    o = ImagingOptions(timeout_s=1.5, wsclean_executable=str(fake))
    log = tmp_path / "imager.log"
    cmd = build_wsclean_cmd(Path("g.ms"), tmp_path / "x", o, temp_dir=tmp_path / "t", log_path=log)
    start = time.monotonic()
    with pytest.raises(ToolTimeoutError, match="wsclean timed out"):
        run_tool(cmd, kill_grace_s=2.0)
    assert time.monotonic() - start < 15
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "gridding..." in log.read_text()


def test_wsclean_without_deconvolution(tmp_path: Path) -> None:
    """niter 0: WSClean must be asked for the PSF; its image is the residual, no model."""
    o = ImagingOptions(niter=0)
    argv = build_wsclean_cmd(Path("g.ms"), tmp_path / "x", o, temp_dir=tmp_path).argv
    assert "-make-psf" in argv and _args(argv, "-niter") == ["0"]
    default = build_wsclean_cmd(Path("g.ms"), tmp_path / "x", ImagingOptions(), temp_dir=tmp_path)
    assert "-make-psf" not in default.argv
    outs = output_paths(tmp_path / "x", o)
    assert outs["residual"] == outs["image"] and "model" not in outs
    assert outs["psf"].name == "x-psf.fits"
