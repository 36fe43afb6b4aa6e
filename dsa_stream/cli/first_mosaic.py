"""``run-first-mosaic INPUT_DIR``: the first 10 consecutive groups of a directory -> a mosaic.

A console script of its own (also ``dsa-stream first-mosaic``). Exit statuses:
0 mosaic published; 1 error; 2 usage; 3 no window of consecutive complete groups;
4 no calibration possible; 5 a stage failed (dead jobs); 6 mosaic made but not
published (its QA failed, or it is invalid).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dsa_stream import naming
from dsa_stream.exceptions import DsaStreamError

DEFAULT_SITE = Path("first-mosaic-site")


def _settings(site: Path, config: Path | None, catalog: Path | None, input_dir: Path) -> Any:
    from dsa_stream.config import load_settings
    from dsa_stream.site import init_site

    init = init_site(site)
    overrides: dict[str, Any] = {"paths": {"root": str(init.root)}}
    truth = input_dir / naming.NIGHT_TRUTH_FILENAME
    settings = load_settings(config or init.config_path, overrides)
    if catalog is not None:
        overrides["products"] = {"catalog": str(catalog.resolve())}
    elif settings.products.catalog is None and truth.is_file():
        overrides["products"] = {"catalog": str(truth.resolve())}
    return load_settings(config or init.config_path, overrides)


def _logging(settings: Any, verbose: int, quiet: int) -> None:
    """Warnings on the terminal (the progress bars say the rest), everything in a log file."""
    import logging

    from dsa_stream.cli.logsetup import configure_logging, effective_level
    from dsa_stream.logctx import file_handler

    level = effective_level(settings.logging.level, verbose, quiet + 1)
    configure_logging(level, settings.logging.format)
    root = logging.getLogger()
    for console_handler in root.handlers:
        console_handler.setLevel(level)
    logfile = settings.paths.resolve("logs") / "run-first-mosaic.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    handler = file_handler(logfile, settings.logging.format)
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))


def _render(s: Any, console: Console) -> None:
    from rich.table import Table

    t = Table(title="run-first-mosaic", show_header=False)
    t.add_column("item", style="bold")
    t.add_column("value")
    t.add_row("groups", f"{len(s.groups)}: {s.groups[0]} .. {s.groups[-1]}")
    t.add_row("calibration", s.calibration)
    if s.mosaic_key:
        t.add_row("mosaic", f"{s.mosaic_key} v{s.mosaic_version} ({s.mosaic_state})")
        t.add_row("mosaic FITS", str(s.mosaic_path))
        t.add_row("preview PNG", str(s.preview_path or "-"))
    qa = s.mosaic_qa or {}
    if qa:
        t.add_row("mosaic QA", s.qa_status or "-")
        t.add_row(
            "noise / peak",
            f"{(qa.get('noise_measured_jy') or 0) * 1e3:.2f} mJy/beam / {qa.get('peak_jy', 0):.3f}"
            " Jy/beam",
        )
        t.add_row(
            "sources checked / found",
            f"{qa.get('n_sources_checked')} / {qa.get('n_sources_found')}",
        )
        t.add_row("median flux ratio", str(qa.get("flux_ratio_median")))
        t.add_row("median offset (beam)", str(qa.get("offset_beams_median")))
        if qa.get("failures"):
            t.add_row("QA failures", "; ".join(qa["failures"]))
    for st in s.stages:
        if st.succeeded or st.failed:
            t.add_row(
                f"stage {st.stage}",
                f"{st.succeeded} done, {st.failed} failed, {st.seconds:.1f} s",
            )
    t.add_row("jobs run now", f"{s.jobs_run} ({s.jobs_failed} failed attempts)")
    if s.reconcile_fixed:
        t.add_row("repaired", f"{s.reconcile_fixed} discrepancies of an earlier run")
    for line in s.dead_jobs:
        t.add_row("FAILED", line)
    t.add_row("registry", s.registry_url)
    t.add_row("time", f"{s.seconds:.1f} s")
    console.print(t)
    console.print(
        "lineage: dsa-stream --config "
        f"{s.site / naming.SITE_CONFIG_FILENAME} registry lineage {s.mosaic_key or '<product>'}"
    )


@click.command("run-first-mosaic", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--site",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_SITE,
    show_default=True,
    help="Site directory (created with `dsa-stream init` defaults when new).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Configuration YAML (default: the site's dsa-stream.yaml).",
)
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sources QA compares against (default: INPUT_DIR/truth.json when present).",
)
@click.option("--json", "json_output", is_flag=True, help="Print the summary as JSON.")
@click.option("-v", "--verbose", count=True, help="More log detail.")
@click.option("-q", "--quiet", count=True, help="Less log detail.")
def first_mosaic_cmd(
    input_dir: Path,
    site: Path,
    config_path: Path | None,
    catalog: Path | None,
    json_output: bool,
    verbose: int,
    quiet: int,
) -> None:
    """Find the first 10 consecutive complete groups in INPUT_DIR and make their mosaic.

    convert -> calibrate -> image -> mosaic -> finalize -> publish, with a registry in
    the site. A rerun checks earlier outputs, redoes invalid ones and otherwise does
    no work.
    """
    from dsa_stream.pipeline.first_mosaic import (
        EXIT_ERROR,
        STAGES,
        FirstMosaicError,
        run_first_mosaic,
    )

    console = Console(stderr=True)
    try:
        settings = _settings(site, config_path, catalog, input_dir.resolve())
        _logging(settings, verbose, quiet)
        with Progress(
            TextColumn("[progress.description]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=json_output or not console.is_terminal,
        ) as progress:
            scan = progress.add_task("headers", total=None)
            tasks = {s: progress.add_task(s, total=None) for s in STAGES}

            def on_progress(counts: dict[str, tuple[int, int]]) -> None:
                for stage, (done, total) in counts.items():
                    progress.update(tasks[stage], completed=done, total=total or None)

            summary = run_first_mosaic(
                input_dir.resolve(),
                settings,
                on_scan=lambda k, n: progress.update(scan, completed=k, total=n),
                on_progress=on_progress,
                on_note=lambda m: progress.console.print(f"[cyan]{m}"),
            )
    except FirstMosaicError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except DsaStreamError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    if json_output:
        click.echo(summary.model_dump_json(indent=2))
    else:
        _render(summary, Console())
    sys.exit(summary.exit_code)


def main() -> None:
    """Console-script entry point."""
    first_mosaic_cmd(prog_name="run-first-mosaic")
