"""Small pure pieces: CASA calls as data, configuration mapping, names, reference antenna."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dsa_stream import naming
from dsa_stream.calibration.casa_steps import apply_call, casa_flag_calls, solve_calls
from dsa_stream.calibration.flagging import aoflagger_command, resolve_flagger
from dsa_stream.calibration.options import (
    ApplyOptions,
    FlagOptions,
    SelectionOptions,
    SolveOptions,
    SolveParameters,
    apply_options,
    selection_options,
    solve_options,
)
from dsa_stream.calibration.refant import choose_refant, rank_antennas
from dsa_stream.config import CalibrateConfig, load_settings
from dsa_stream.exceptions import CalibrationError, NamingError


def test_solve_calls_carry_the_parameters_that_worked() -> None:
    tables = {"prebandpass": "s.G0", "bandpass": "s.B", "gain": "s.G"}
    params = SolveParameters().model_dump(mode="json")
    (t0, g0), (t1, b), (t2, g) = solve_calls("c.ms", tables, ["31", "25"], params, nchan=768)
    assert (t0, t1, t2) == ("gaincal", "bandpass", "gaincal")
    assert g0["calmode"] == "p" and g0["solint"] == "60s" and g0["spw"] == "0:307~460"
    assert g0["refant"] == b["refant"] == g["refant"] == "31,25"
    assert b["minsnr"] == 5.0 and b["solnorm"] is True and b["fillgaps"] == 3
    assert b["bandtype"] == "B" and b["solint"] == "inf" and b["gaintable"] == ["s.G0"]
    assert g["calmode"] == "ap" and g["solint"] == "inf" and g["gaintable"] == ["s.B"]
    assert all(c["minblperant"] == 4 for c in (g0, b, g))
    small = solve_calls("c.ms", tables, ["1"], params, nchan=32)[0][1]
    assert small["spw"] == "0:13~18"
    call = apply_call("t.ms", ["s.B", "s.G"], "nearest", False)
    assert call["interp"] == ["nearest", "nearest"] and call["calwt"] == [False, False]
    assert call["flagbackup"] is False and call["applymode"] == "calflag"
    assert [c["mode"] for c in casa_flag_calls("c.ms")] == ["tfcrop", "rflag", "extend"]
    with pytest.raises(ValueError, match="solution interval"):
        SolveParameters(gain_solint="often")


def test_casa_steps_never_imports_python_casacore() -> None:
    code = (
        "import sys, dsa_stream.calibration.casa_steps\n"
        "print(sorted(m for m in sys.modules if m.startswith(('casacore', 'casatools'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def test_configuration_maps_onto_the_stage_defaults() -> None:
    cfg = CalibrateConfig()
    assert solve_options(cfg) == SolveOptions()
    assert selection_options(cfg) == SelectionOptions()
    assert apply_options(cfg) == ApplyOptions()
    custom = load_settings(
        overrides={
            "calibrate": {
                "gain_validity_hours": 2.0,
                "dec_tolerance_deg": 0.5,
                "no_calibration_policy": "image-uncalibrated",
                "refant": ["5", "6"],
                "qa": {"min_antennas": 3},
            }
        }
    ).calibrate
    opts = solve_options(custom)
    assert opts.validity.gain_hours == 2.0 and opts.validity.bandpass_hours == 12.0
    assert opts.parameters.refant == ("5", "6") and opts.qa.min_antennas == 3
    sel = selection_options(custom)
    assert sel.dec_tolerance_deg == 0.5 and sel.policy == "image-uncalibrated"


def test_calset_names_round_trip() -> None:
    name = naming.format_calset_name(naming.CalSetName("2025-10-02T12:49:11", "3C454.3"))
    assert name == "2025-10-02T12:49:11_3C454.3"
    assert naming.parse_calset_name(name) == ("2025-10-02T12:49:11", "3C454.3")
    for kind, suffix in (("bandpass", "B"), ("gain", "G"), ("prebandpass", "G0")):
        table = naming.caltable_filename(name, kind)
        assert table == f"{name}.{suffix}"
        assert naming.parse_caltable_filename(table) == (("2025-10-02T12:49:11", "3C454.3"), kind)
    assert naming.calplot_filename(name, "gains") == f"{name}_gains.png"
    assert naming.calset_ms_filename(name) == f"{name}.ms"
    j = naming.format_calset_name(naming.CalSetName("2025-10-02T12:49:11", "J0019+7327"))
    assert naming.parse_calset_name(j).calibrator == "J0019+7327"
    for bad in ("3C147", "2025-10-02T12:49:11_", "2025-10-02_3C147", "x_3C147"):
        with pytest.raises(NamingError):
            naming.parse_calset_name(bad)
    with pytest.raises(NamingError):
        naming.format_calset_name(naming.CalSetName("2025-10-02T12:49:11", "3C 147"))
    with pytest.raises(NamingError):
        naming.caltable_filename(name, "delay")
    with pytest.raises(NamingError):
        naming.parse_caltable_filename(f"{name}.K")


def test_reference_antenna_least_flagged_then_central() -> None:
    pos = {str(i): np.array([100.0 * i, 0.0, 0.0]) for i in range(1, 8)}
    flagged = dict.fromkeys(pos, 0.0)
    # the median position is antenna 4's
    assert rank_antennas(flagged, pos)[0] == "4"
    flagged["4"] = 0.3
    ranked = rank_antennas(flagged, pos)
    assert ranked[0] in ("3", "5") and ranked[-1] == "4"
    flagged["4"] = 0.01  # within the 2% tier: still central first
    assert rank_antennas(flagged, pos)[0] == "4"
    flagged["4"] = 0.9  # too flagged to ever be a reference
    assert "4" not in rank_antennas(flagged, pos)
    assert choose_refant(flagged, pos)[:1] != ["4"] and len(choose_refant(flagged, pos)) == 5
    assert choose_refant(flagged, pos, ("7", "1")) == ["7", "1"]
    with pytest.raises(CalibrationError, match="no data"):
        choose_refant(flagged, pos, ("99",))
    with pytest.raises(CalibrationError, match="no reference antenna"):
        rank_antennas(dict.fromkeys(pos, 1.0), pos)


def test_flagger_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("shutil.which", lambda exe: None)
    assert resolve_flagger(FlagOptions()) == "none"  # auto without AOFlagger: MAD clip only
    assert resolve_flagger(FlagOptions(flagger="casa")) == "casa"
    with pytest.raises(CalibrationError, match="not on PATH"):
        resolve_flagger(FlagOptions(flagger="aoflagger"))
    monkeypatch.setattr("shutil.which", lambda exe: f"/usr/bin/{exe}")
    assert resolve_flagger(FlagOptions()) == "aoflagger"
    cmd = aoflagger_command(tmp_path / "c.ms", FlagOptions(aoflagger_strategy=tmp_path / "s.lua"))
    assert cmd.argv == (
        "aoflagger",
        "-strategy",
        str(tmp_path / "s.lua"),
        "-column",
        "DATA",
        str(tmp_path / "c.ms"),
    )
    assert cmd.timeout_s == 900.0
