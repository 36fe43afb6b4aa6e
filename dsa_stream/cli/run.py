"""``dsa-stream run [--config FILE] [--burst]``: the streaming daemon.

Without ``--burst`` it runs until stopped (systemd unit: ``config/dsa-stream.service``):
the first SIGTERM/SIGINT finishes the running stage and exits 0, a second aborts
the stage (its job is requeued) and exits 3. ``--burst`` processes what is in the
incoming directory and the queue, then exits 0. Exit 1: an error (site locked by
another daemon, configuration, registry, a crashed thread). See docs/operations.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dsa_stream.cli.context import emit, emit_table, get_ctx, json_option
from dsa_stream.cli.logsetup import configure_logging, effective_level


def _render(d: dict[str, Any]) -> None:
    rows: list[tuple[str, Any]] = [
        ("mode", d["mode"]),
        ("exit code", d["exit_code"]),
        ("reason", d["reason"]),
        ("registry revision", d["registry_revision"]),
    ]
    for w in d["workers"]:
        rows.append(
            (
                f"worker {w['worker_id'][:8]}",
                f"{w['succeeded']} succeeded, {w['failed']} failed, {w['lost']} lost, "
                f"{w['cancelled']} cancelled ({w['exit_reason']})",
            )
        )
    rows.extend((f"ingest {k}", v) for k, v in d["ingest"].items() if v)
    if d["pending_files"]:
        rows.append(("files still pending", ", ".join(d["pending_files"])))
    emit_table(f"dsa-stream run ({d['mode']})", ("", "value"), rows)


@click.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration YAML (same as the top-level --config).",
)
@click.option(
    "--burst", is_flag=True, help="Process everything available now, then exit 0 (scripts, tests)."
)
@json_option
@click.pass_context
def run_cmd(click_ctx: click.Context, config_path: Path | None, burst: bool) -> None:
    """Run the daemon: watcher, reconcile scans, reaper and the sequential worker."""
    from dsa_stream.daemon.service import Daemon

    ctx = get_ctx()
    if config_path is not None:
        ctx.config_path = config_path
        ctx._settings = None
        log_cfg = ctx.settings().logging
        configure_logging(effective_level(log_cfg.level, ctx.verbose, ctx.quiet), log_cfg.format)
    settings = ctx.settings()
    daemon = Daemon(settings)
    with daemon.signal_handlers():
        report = daemon.run(burst=burst)
    emit(report.model_dump(mode="json"), _render)
    click_ctx.exit(report.exit_code)
