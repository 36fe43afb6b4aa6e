"""One runner for every external program and every isolated Python call.

External tools (WSClean, a CASA task in a child interpreter) are described as
data (:class:`ToolCommand`) and executed by :func:`run_tool`, which

* starts the child in its own session (process group), so a timeout or an abort
  kills the tool *and* everything it spawned;
* enforces a hard wall-clock timeout: SIGTERM to the group, then SIGKILL after a
  grace period;
* streams the child's stdout/stderr line by line into a log file and into our
  logger (debug level), keeping the tail for error messages;
* raises :class:`~dsa_stream.exceptions.ToolTimeoutError` or
  :class:`~dsa_stream.exceptions.ToolError` with that tail.

:func:`call_in_subprocess` runs a Python function (given as ``"module:attr"``)
in a fresh interpreter through the same runner, passing JSON in and out. Stages
that use CASA run this way: a hung or crashing CASA call cannot take the worker
down, and the C++ libraries of casatools never share a process with another
casacore build.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from dsa_stream.exceptions import (
    DsaStreamError,
    ToolCancelledError,
    ToolError,
    ToolTimeoutError,
)

logger = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL when a tool must be stopped.
KILL_GRACE_S = 10.0
_TAIL_LINES = 40


class ToolCommand(BaseModel):
    """An external command, fully described as data (built, tested, then run)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    argv: tuple[str, ...]
    """Program and arguments."""
    timeout_s: float = Field(gt=0)
    """Hard wall-clock limit; the whole process group is killed after it."""
    cwd: Path | None = None
    """Working directory (created if missing)."""
    env: Mapping[str, str] = Field(default_factory=dict)
    """Variables added to (or replacing those of) the current environment."""
    log_path: Path | None = None
    """File that receives the tool's combined stdout/stderr (appended)."""
    label: str = ""
    """Short name for log lines and errors (defaults to the program name)."""

    def name(self) -> str:
        """The label, or the program's base name."""
        return self.label or Path(self.argv[0]).name


class ToolResult(BaseModel):
    """What a finished tool run produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    argv: tuple[str, ...]
    returncode: int
    duration_s: float
    output_tail: str
    log_path: Path | None


def _pump(stream: IO[str], sink: IO[str] | None, tail: collections.deque[str], name: str) -> None:
    for line in stream:
        tail.append(line.rstrip("\n"))
        if sink is not None:
            sink.write(line)
            sink.flush()
        logger.debug("[%s] %s", name, line.rstrip("\n"))


def _kill_group(proc: subprocess.Popen[str], grace_s: float) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # Always reap the whole group: children may outlive the leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def _wait(proc: subprocess.Popen[str], timeout_s: float, cancel: threading.Event | None) -> str:
    """Wait for the child: "done", "timeout" or "cancelled"."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        try:
            proc.wait(timeout=remaining if cancel is None else min(remaining, 0.2))
            return "done"
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.is_set():
                return "cancelled"


def run_tool(
    cmd: ToolCommand,
    *,
    check: bool = True,
    kill_grace_s: float = KILL_GRACE_S,
    cancel: threading.Event | None = None,
) -> ToolResult:
    """Run ``cmd`` with its timeout; raise on timeout (always) or failure (if ``check``).

    Args:
        cmd: The command.
        check: Raise :class:`ToolError` on a non-zero exit status.
        kill_grace_s: Seconds between SIGTERM and SIGKILL when stopping the tool.
        cancel: When set (a lost lease, a cancel request, an abort), the tool's
            process group is killed within ~0.2 s.

    Raises:
        ToolTimeoutError: the tool ran past ``cmd.timeout_s`` and was killed.
        ToolCancelledError: ``cancel`` was set and the tool was killed.
        ToolError: the tool could not start, or exited non-zero with ``check``.
    """
    name = cmd.name()
    env = {**os.environ, **cmd.env}
    if cmd.cwd is not None:
        cmd.cwd.mkdir(parents=True, exist_ok=True)
    sink: IO[str] | None = None
    if cmd.log_path is not None:
        cmd.log_path.parent.mkdir(parents=True, exist_ok=True)
        sink = open(cmd.log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        sink.write(f"$ {' '.join(cmd.argv)}\n")
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    start = time.monotonic()
    logger.info("running %s (timeout %.0f s)", name, cmd.timeout_s)
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by us, no shell
            list(cmd.argv),
            cwd=cmd.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        if sink is not None:
            sink.close()
        raise ToolError(f"{name}: cannot start {cmd.argv[0]!r}: {exc}") from exc
    assert proc.stdout is not None
    pump = threading.Thread(target=_pump, args=(proc.stdout, sink, tail, name), daemon=True)
    pump.start()
    outcome = "done"
    try:
        outcome = _wait(proc, cmd.timeout_s, cancel)
    except BaseException:
        _kill_group(proc, kill_grace_s)  # an abort (e.g. second SIGINT) kills the tool too
        raise
    finally:
        if outcome != "done":
            _kill_group(proc, kill_grace_s)
        else:
            # The leader is gone; make sure nothing it spawned survives it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        pump.join(timeout=5)
        proc.stdout.close()
        if sink is not None:
            sink.close()
    duration = time.monotonic() - start
    text_tail = "\n".join(tail)
    if outcome == "cancelled":
        raise ToolCancelledError(f"{name} was stopped on request; last output:\n{text_tail}")
    if outcome == "timeout":
        raise ToolTimeoutError(
            f"{name} timed out after {cmd.timeout_s:.0f} s and was killed; "
            f"last output:\n{text_tail}"
        )
    result = ToolResult(
        argv=cmd.argv,
        returncode=proc.returncode,
        duration_s=duration,
        output_tail=text_tail,
        log_path=cmd.log_path,
    )
    logger.info("%s finished in %.1f s (exit %d)", name, duration, proc.returncode)
    if check and proc.returncode != 0:
        raise ToolError(f"{name} exited with status {proc.returncode}; last output:\n{text_tail}")
    return result


# --------------------------------------------------------------------------------------
# Python calls in a child interpreter
# --------------------------------------------------------------------------------------

_RESULT_MARKER = "DSA_STREAM_RESULT_FILE"


def call_in_subprocess(
    target: str,
    payload: Mapping[str, Any],
    *,
    timeout_s: float,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    label: str = "",
    cancel: threading.Event | None = None,
) -> Any:
    """Call ``module:function(**payload)`` in a fresh Python process; return its JSON result.

    The function's return value must be JSON-serialisable (pydantic models are
    dumped with ``model_dump(mode="json")``). An exception in the child that is a
    :class:`DsaStreamError` is re-raised here as the same class when it can be
    imported, with the child's message; anything else becomes a ``ToolError``.
    """
    with tempfile.TemporaryDirectory(prefix="dsa-stream-call-") as tmp:
        request = Path(tmp) / "request.json"
        response = Path(tmp) / "response.json"
        request.write_text(json.dumps({"target": target, "payload": payload}, default=str))
        cmd = ToolCommand(
            argv=(sys.executable, "-m", "dsa_stream.toolrun", str(request), str(response)),
            timeout_s=timeout_s,
            log_path=log_path,
            env=dict(env or {}),
            label=label or target.rsplit(":", 1)[-1],
        )
        run_tool(cmd, check=False, cancel=cancel)
        if not response.exists():
            raise ToolError(f"{cmd.name()}: the child process died without a result")
        doc = json.loads(response.read_text())
    if doc["ok"]:
        return doc["result"]
    raise _rebuild_error(doc["error"])


def _rebuild_error(err: Mapping[str, str]) -> DsaStreamError:
    import dsa_stream.exceptions as exc_mod

    cls = getattr(exc_mod, err.get("type", ""), None)
    message = err.get("message", "")
    if isinstance(cls, type) and issubclass(cls, DsaStreamError):
        return cls(message)
    return ToolError(f"{err.get('type')}: {message}\n{err.get('traceback', '')}")


def _child_main(argv: Sequence[str]) -> int:
    """Entry point of the child interpreter (``python -m dsa_stream.toolrun REQ RESP``)."""
    import importlib
    import traceback

    request, response = Path(argv[0]), Path(argv[1])
    doc = json.loads(request.read_text())
    module_name, attr = doc["target"].split(":")
    try:
        func = getattr(importlib.import_module(module_name), attr)
        result = func(**doc["payload"])
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        out = {"ok": True, "result": result}
    except Exception as exc:  # reported to the parent, which decides
        out = {
            "ok": False,
            "error": {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(),
            },
        }
    tmp = response.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, default=str))
    tmp.replace(response)
    return 0 if out["ok"] else 1


if __name__ == "__main__":  # pragma: no cover - exercised through call_in_subprocess
    from dsa_stream.cli.logsetup import configure_logging

    configure_logging(logging.INFO, os.environ.get("DSA_STREAM_CHILD_LOG_FORMAT", "text"))
    sys.exit(_child_main(sys.argv[1:]))
