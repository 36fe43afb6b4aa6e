"""Open a written MS with casatools and with casacore 3.5, each in a child process.

This module must not import python-casacore: :func:`casatools_probe` runs in a fresh
interpreter (``call_in_subprocess``), and loading casatools next to python-casacore in
one process can crash (two casacore builds). The casacore 3.5 probe runs under
Debian's ``/usr/bin/python3`` with python3-casacore, the casacore that Debian's
WSClean links.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from dsa_stream.conversion.options import CheckRecord, ValidationOptions
from dsa_stream.exceptions import ConversionError, DsaStreamError, ToolError
from dsa_stream.toolrun import ToolCommand, call_in_subprocess, run_tool

logger = logging.getLogger(__name__)

SUBTABLES = (
    "ANTENNA",
    "DATA_DESCRIPTION",
    "FEED",
    "FIELD",
    "HISTORY",
    "OBSERVATION",
    "POINTING",
    "POLARIZATION",
    "SOURCE",
    "SPECTRAL_WINDOW",
    "STATE",
)

#: Script run by the casacore 3.5 interpreter; prints one JSON line.
CASACORE35_SCRIPT = r"""
import json, sys
try:
    import casacore, casacore.tables as pt
except ImportError as exc:
    print(json.dumps({"missing": str(exc)}))
    sys.exit(0)
ms = sys.argv[1]
out = {"version": getattr(casacore, "__version__", "?"), "subtables": {}}
try:
    t = pt.table(ms, ack=False)
    out["nrows"] = t.nrows()
    n = min(10, t.nrows())
    out["data_shape"] = list(t.getcol("DATA", 0, n).shape)
    out["uvw_shape"] = list(t.getcol("UVW", 0, n).shape)
    t.getcol("TIME", 0, n)
    t.getcol("FLAG", 0, n)
    for name in sys.argv[2].split(","):
        s = pt.table(ms + "/" + name, ack=False)
        out["subtables"][name] = s.nrows()
        if s.nrows():
            for c in s.colnames():
                if s.iscelldefined(c, 0):
                    s.getcell(c, 0)
        s.close()
    t.close()
    out["ok"] = True
except Exception as exc:
    out["ok"] = False
    out["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def casatools_probe(ms: str, subtables: list[str]) -> dict[str, Any]:
    """Open ``ms`` with casatools (run in a child process); return what it saw.

    Opens the main table and every subtable, reads the first rows of DATA/UVW/TIME,
    and asks msmetadata for the observatory position (CASA must know ``DSA_110``).
    """
    from dsa_stream import casa_env

    ct = casa_env.casatools()
    out: dict[str, Any] = {"subtables": {}}
    tb = ct.table()
    try:
        if not tb.open(ms):
            raise ConversionError(f"casatools cannot open {ms}")
        out["nrows"] = int(tb.nrows())
        n = min(10, out["nrows"])
        out["data_shape"] = list(tb.getcol("DATA", 0, n).shape)
        tb.getcol("UVW", 0, n)
        tb.getcol("TIME", 0, n)
        tb.close()
        for name in subtables:
            if not tb.open(f"{ms}/{name}"):
                raise ConversionError(f"casatools cannot open {ms}/{name}")
            out["subtables"][name] = int(tb.nrows())
            tb.close()
    finally:
        tb.done()
    md = ct.msmetadata()
    try:
        md.open(ms)
        out["observatory"] = list(md.observatorynames())
        pos = md.observatoryposition(0)
        out["observatory_height_m"] = float(ct.measures().addxvalue(pos)["value"][2])
        out["nfields"] = int(md.nfields())
        out["nspw"] = int(md.nspw())
    finally:
        md.done()
    return out


def _policy_outcome(policy: str, name: str, message: str) -> CheckRecord:
    if policy == "require":
        raise ConversionError(f"MS check '{name}' could not run: {message}")
    logger.warning("%s check skipped: %s", name, message)
    return CheckRecord(name=name, status="warning", detail=message)


def check_casatools(ms: Path, opts: ValidationOptions) -> CheckRecord:
    """The MS opens in casatools (child process)."""
    name = "casatools"
    if opts.casatools == "off":
        return CheckRecord(name=name, status="skipped", detail="disabled")
    try:
        got = call_in_subprocess(
            "dsa_stream.conversion.casacheck:casatools_probe",
            {"ms": str(ms), "subtables": list(SUBTABLES)},
            timeout_s=opts.timeout_s,
            label="casatools MS check",
        )
    except ConversionError as exc:
        raise ConversionError(f"MS check '{name}' failed: {exc}") from exc
    except ToolError as exc:
        if "RuntimeError" in str(exc) or opts.casatools == "require":
            raise ConversionError(f"MS check '{name}' failed: {exc}") from exc
        return _policy_outcome(opts.casatools, name, str(exc))
    except DsaStreamError as exc:
        raise ConversionError(f"MS check '{name}' failed: {exc}") from exc
    if "DSA_110" not in got.get("observatory", []):
        raise ConversionError(f"MS check '{name}' failed: observatory is {got.get('observatory')}")
    return CheckRecord(
        name=name,
        status="ok",
        detail=f"{got['nrows']} rows, {len(got['subtables'])} subtables, "
        f"{got['nfields']} field(s), observatory {got['observatory'][0]}",
    )


def build_casacore35_command(ms: Path, opts: ValidationOptions) -> ToolCommand:
    """The command that opens ``ms`` with the legacy interpreter's casacore."""
    return ToolCommand(
        argv=(str(opts.legacy_python), "-c", CASACORE35_SCRIPT, str(ms), ",".join(SUBTABLES)),
        timeout_s=opts.timeout_s,
        label="casacore 3.5 MS check",
        env={"PYTHONNOUSERSITE": "1", "PYTHONPATH": ""},
    )


def check_casacore35(ms: Path, opts: ValidationOptions) -> CheckRecord:
    """The MS opens in casacore 3.5 (Debian's python3-casacore, as WSClean 3.1 links)."""
    name = "casacore 3.5"
    if opts.casacore35 == "off":
        return CheckRecord(name=name, status="skipped", detail="disabled")
    if not opts.legacy_python.exists():
        return _policy_outcome(
            opts.casacore35,
            name,
            f"{opts.legacy_python} does not exist (install python3 and python3-casacore)",
        )
    try:
        res = run_tool(build_casacore35_command(ms, opts), check=True)
    except ToolError as exc:
        return _policy_outcome(opts.casacore35, name, str(exc))
    line = res.output_tail.strip().splitlines()[-1] if res.output_tail.strip() else "{}"
    try:
        got = json.loads(line)
    except ValueError:
        return _policy_outcome(opts.casacore35, name, f"unexpected output: {line[:200]}")
    if "missing" in got:
        return _policy_outcome(
            opts.casacore35,
            name,
            f"{opts.legacy_python} has no casacore module ({got['missing']}); "
            "install Debian's python3-casacore",
        )
    if not got.get("ok"):
        raise ConversionError(f"MS check '{name}' failed: {got.get('error')}")
    return CheckRecord(
        name=name,
        status="ok",
        detail=f"python-casacore {got.get('version')}: {got['nrows']} rows, "
        f"{len(got['subtables'])} subtables",
    )
