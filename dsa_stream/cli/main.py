"""Entry point of the ``dsa-stream`` command group.

Subcommands are imported lazily (CASA and pyuvdata are slow to import), from
the table :data:`COMMANDS`. Logging is configured here and nowhere else.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from dsa_stream import __version__
from dsa_stream.cli.context import CliContext
from dsa_stream.cli.logsetup import configure_logging, effective_level
from dsa_stream.config import config_path_from_env
from dsa_stream.exceptions import DsaStreamError

logger = logging.getLogger(__name__)

#: Subcommand name -> ("module:attribute" of its click command, one-line help).
#: The help is listed without importing the module.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("dsa_stream.cli.site:init_cmd", "Create a ready site: configuration and directories."),
    "config": ("dsa_stream.cli.site:config_group", "Inspect the resolved configuration."),
    "version": ("dsa_stream.cli.site:version_cmd", "Versions of dsa-stream and its software."),
    "simulate": (
        "dsa_stream.cli.simulate:simulate_cmd",
        "Write simulated DSA-110 subband files with a known sky.",
    ),
    "demo": ("dsa_stream.cli.demo:demo_cmd", "A newcomer's first run on simulated data."),
    "convert": (
        "dsa_stream.cli.convert:convert_cmd",
        "Convert one group of subband files into a validated Measurement Set.",
    ),
    "calibrate": (
        "dsa_stream.cli.calibrate:calibrate_group",
        "Calibrator transits, bandpass + gain solves and their application.",
    ),
    "image": (
        "dsa_stream.cli.image:image_cmd",
        "Image one Measurement Set: FITS image, primary beam, PB-corrected image, QA, PNG.",
    ),
    "first-mosaic": (
        "dsa_stream.cli.first_mosaic:first_mosaic_cmd",
        "The first 10 consecutive groups of a directory -> a published mosaic (run-first-mosaic).",
    ),
    "reconcile": (
        "dsa_stream.cli.reconcile:reconcile_cmd",
        "Registry vs disk: list (and --fix) disagreements.",
    ),
    "db": ("dsa_stream.cli.db:db_group", "Registry database schema: upgrade, current."),
    "ingest": (
        "dsa_stream.cli.ingest:ingest_cmd",
        "Register subband files from the incoming directory (watch, or --once).",
    ),
    "registry": (
        "dsa_stream.cli.registry:registry_group",
        "Query the registry: groups, files, jobs, workers, products, stats.",
    ),
    "jobs": (
        "dsa_stream.cli.jobs:jobs_group",
        "Operate on jobs: retry, cancel, show, dead-letter.",
    ),
    "mosaic": (
        "dsa_stream.cli.mosaic:mosaic_group",
        "Plan mosaic windows; build a primary-beam-weighted mosaic from images.",
    ),
    "run": (
        "dsa_stream.cli.run:run_cmd",
        "Run the daemon: watcher, reconcile scans, reaper and worker (--burst: once).",
    ),
    "status": (
        "dsa_stream.cli.status:status_cmd",
        "One screen: backlog, running stage, last products, health, dead letters.",
    ),
    "workers": (
        "dsa_stream.cli.workers:workers_group",
        "Workers: list them, drain one (finish and stop) or kill one.",
    ),
    "logs": (
        "dsa_stream.cli.logs:logs_cmd",
        "Show or follow the per-job stage logs (--job, --group, --follow).",
    ),
}

#: Exit codes shared by every command.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """All subcommand names, sorted."""
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return one subcommand."""
        if cmd_name in COMMANDS:
            module_name, attr = COMMANDS[cmd_name][0].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List subcommands with their one-line help, importing none of them."""
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="dsa-stream")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration YAML (default: $DSA_STREAM_CONFIG, else built-in defaults).",
)
@click.option("-v", "--verbose", count=True, help="More log detail (repeatable).")
@click.option("-q", "--quiet", count=True, help="Less log detail (repeatable).")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON output.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log line format (overrides the configuration).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    verbose: int,
    quiet: int,
    json_output: bool,
    log_format: str | None,
) -> None:
    """dsa-stream: streaming continuum imaging for DSA-110."""
    state = ctx.ensure_object(CliContext)
    state.config_path = config_path or config_path_from_env()
    state.verbose, state.quiet, state.json_output = verbose, quiet, json_output
    if log_format:
        state.override("logging.format", log_format)
    try:
        log_cfg = state.settings().logging
        level, fmt = log_cfg.level, log_cfg.format
    except DsaStreamError:
        # A broken configuration is reported by the command that needs it; logging
        # still has to work to say so.
        level, fmt = "INFO", log_format or "text"
    configure_logging(effective_level(level, verbose, quiet), fmt)


def main(argv: Sequence[str] | None = None) -> Any:
    """Run the command group; errors of ours become one clear line and exit code 1."""
    try:
        return cli.main(args=list(argv) if argv is not None else None, prog_name="dsa-stream")
    except DsaStreamError as exc:
        logger.debug("command failed", exc_info=True)
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":  # pragma: no cover
    main()
