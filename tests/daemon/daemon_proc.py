"""The production daemon in a real process, with a stub ``convert`` handler (a script).

Usage: ``python daemon_proc.py CONFIG``. It runs exactly what ``dsa-stream run`` runs
(:class:`~dsa_stream.daemon.service.Daemon` under its SIGTERM/SIGINT handlers), only
with this handler table. The stub handler is the injected fault: it writes
``<root>/started-<job>-a<attempt>``, then runs a child process (its own process
group, through :func:`~dsa_stream.toolrun.run_tool`) that records its pid in
``<root>/child-<job>.pid`` and sleeps ``payload["sleep_s"]`` seconds. An abort or a
lost lease kills that child through ``run.cancel``. Exit status: the daemon's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dsa_stream.cli.logsetup import configure_logging
from dsa_stream.config import load_settings
from dsa_stream.daemon.service import Daemon
from dsa_stream.pipeline.context import PipelineContext, StageOutcome, StageRun
from dsa_stream.toolrun import ToolCommand, run_tool


def sleeper(ctx: PipelineContext, run: StageRun) -> StageOutcome:
    claim = run.claim
    root = ctx.settings.paths.root
    (root / f"started-{claim.job_id}-a{claim.attempt}").write_text("")
    pid_file = root / f"child-{claim.job_id}.pid"
    seconds = float((claim.payload or {}).get("sleep_s", 1.0))
    code = (
        "import os, time, pathlib; "
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
        f"time.sleep({seconds})"
    )
    cmd = ToolCommand(argv=(sys.executable, "-c", code), timeout_s=300, log_path=run.log_path)
    run_tool(cmd, cancel=run.cancel, kill_grace_s=1)
    return StageOutcome(detail=f"slept {seconds} s")


def main(config: str) -> int:
    settings = load_settings(Path(config))
    configure_logging(20, "text")
    daemon = Daemon(settings, handlers={"convert": sleeper})
    with daemon.signal_handlers():
        report = daemon.run()
    sys.stdout.write(json.dumps(report.model_dump(mode="json")) + "\n")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
