"""The external-tool runner: timeouts kill the whole process group, logs are kept."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from dsa_stream.exceptions import ConversionError, ToolError, ToolTimeoutError
from dsa_stream.toolrun import ToolCommand, call_in_subprocess, run_tool


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is as good as dead here.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_success_output_is_logged(tmp_path: Path) -> None:
    log = tmp_path / "tool.log"
    cmd = ToolCommand(
        argv=(sys.executable, "-c", "print('hello'); import sys; print('err', file=sys.stderr)"),
        timeout_s=30,
        log_path=log,
    )
    res = run_tool(cmd)
    assert res.returncode == 0
    assert "hello" in res.output_tail and "err" in res.output_tail
    text = log.read_text()
    assert text.startswith("$ ") and "hello" in text


def test_nonzero_exit_raises_with_tail(tmp_path: Path) -> None:
    cmd = ToolCommand(
        argv=(sys.executable, "-c", "print('boom'); raise SystemExit(3)"), timeout_s=30
    )
    with pytest.raises(ToolError, match="(?s)status 3.*boom"):
        run_tool(cmd)
    assert run_tool(cmd, check=False).returncode == 3


def test_missing_program_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="cannot start"):
        run_tool(ToolCommand(argv=("/nonexistent/wsclean",), timeout_s=5))


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(600)\n"
    )
    cmd = ToolCommand(argv=(sys.executable, "-c", script), timeout_s=2, label="sleeper")
    t0 = time.monotonic()
    with pytest.raises(ToolTimeoutError, match="sleeper timed out"):
        run_tool(cmd, kill_grace_s=2)
    assert time.monotonic() - t0 < 15
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild), "a grandchild survived the timeout"


def test_sigterm_ignoring_tool_is_sigkilled(tmp_path: Path) -> None:
    script = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n"
    cmd = ToolCommand(argv=(sys.executable, "-c", script), timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(ToolTimeoutError):
        run_tool(cmd, kill_grace_s=1)
    assert time.monotonic() - t0 < 10


def _add(a: int, b: int) -> dict[str, int]:
    return {"sum": a + b, "pid": os.getpid()}


def _fail_conversion() -> None:
    raise ConversionError("frequencies are not ascending")


def _fail_other() -> None:
    raise ValueError("plain bug")


def _crash() -> None:
    os._exit(9)


def test_call_in_subprocess_round_trip() -> None:
    out = call_in_subprocess(f"{__name__}:_add", {"a": 2, "b": 3}, timeout_s=60)
    assert out["sum"] == 5 and out["pid"] != os.getpid()


def test_call_in_subprocess_reraises_our_errors_and_wraps_others() -> None:
    with pytest.raises(ConversionError, match="not ascending"):
        call_in_subprocess(f"{__name__}:_fail_conversion", {}, timeout_s=60)
    with pytest.raises(ToolError, match="ValueError: plain bug"):
        call_in_subprocess(f"{__name__}:_fail_other", {}, timeout_s=60)
    with pytest.raises(ToolError, match="died without a result"):
        call_in_subprocess(f"{__name__}:_crash", {}, timeout_s=60)


def test_cancel_event_kills_the_tool_quickly() -> None:
    import threading

    from dsa_stream.exceptions import ToolCancelledError

    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    t0 = time.monotonic()
    cmd = ToolCommand(argv=(sys.executable, "-c", "import time; time.sleep(600)"), timeout_s=300)
    try:
        with pytest.raises(ToolCancelledError, match="stopped on request"):
            run_tool(cmd, cancel=cancel, kill_grace_s=2)
    finally:
        timer.join()
    assert time.monotonic() - t0 < 10
