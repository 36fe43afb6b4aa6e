"""Architecture rules that code review alone would let slip.

* Stage packages (conversion, calibration, imaging, mosaic, simulate) never import
  ``registry``, ``pipeline`` or ``cli``; the registry never imports stage packages.
* Every external process goes through :mod:`dsa_stream.toolrun` or carries a timeout.
* Science code never reads the wall clock to make an observation time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "dsa_stream"
STAGES = ("conversion", "calibration", "imaging", "mosaic", "simulate")
LAYERS = ("registry", "pipeline", "cli")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(subpackage: str) -> list[Path]:
    root = PKG / subpackage
    return sorted(root.rglob("*.py")) if root.is_dir() else []


@pytest.mark.parametrize("stage", STAGES)
def test_stage_packages_do_not_import_upper_layers(stage: str) -> None:
    bad = [
        f"{path.relative_to(PKG)} imports {name}"
        for path in _modules(stage)
        for name in _imports(path)
        if any(
            name == f"dsa_stream.{layer}" or name.startswith(f"dsa_stream.{layer}.")
            for layer in LAYERS
        )
    ]
    assert not bad, "stage code must not import registry/pipeline/cli:\n" + "\n".join(bad)


def test_registry_does_not_import_stage_packages() -> None:
    bad = [
        f"{path.relative_to(PKG)} imports {name}"
        for path in _modules("registry")
        for name in _imports(path)
        if any(name.startswith(f"dsa_stream.{stage}") for stage in STAGES)
    ]
    assert not bad, "\n".join(bad)


def _calls(path: Path) -> list[tuple[str, ast.Call]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            out.append((ast.unparse(node.func), node))
    return out


def test_subprocess_calls_have_timeouts() -> None:
    """subprocess.run/call/check_output need timeout=; Popen is only allowed in toolrun."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        for func, call in _calls(path):
            kwargs = {k.arg for k in call.keywords}
            if (
                func
                in {
                    "subprocess.run",
                    "subprocess.call",
                    "subprocess.check_call",
                    "subprocess.check_output",
                }
                and "timeout" not in kwargs
            ):
                bad.append(f"{path.relative_to(PKG)}:{call.lineno} {func} without timeout=")
            if func == "subprocess.Popen" and path.name != "toolrun.py":
                bad.append(f"{path.relative_to(PKG)}:{call.lineno} Popen outside toolrun")
    assert not bad, "\n".join(bad)


def test_science_stages_never_read_the_wall_clock() -> None:
    """Observation times come from the data: no now()/today()/time.time() in stage code.

    A bookkeeping use (naming a quarantine directory, timing a step) is allowed when
    the line says so with a ``# bookkeeping`` comment.
    """
    forbidden = {
        "datetime.now",
        "datetime.utcnow",
        "datetime.today",
        "date.today",
        "Time.now",
        "time.time",
        "dt.datetime.now",
        "dt.datetime.utcnow",
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
    }
    bad = []
    for stage in ("conversion", "calibration", "imaging", "mosaic"):
        for path in _modules(stage):
            lines = path.read_text().splitlines()
            for func, call in _calls(path):
                if func in forbidden and "# bookkeeping" not in lines[call.lineno - 1]:
                    bad.append(f"{path.relative_to(PKG)}:{call.lineno} calls {func}()")
    assert not bad, "\n".join(bad)
