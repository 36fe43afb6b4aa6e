"""``dsa-stream demo DIR``: a newcomer's first run, entirely offline.

It creates a site in DIR (``dsa-stream init``), simulates a night of DSA-110 data
with a calibrator transit into ``DIR/night/`` (standing in for the correlator's
output directory), and prints what was made and where; ``make demo`` then runs
``run-first-mosaic DIR/night --site DIR`` on it. Running it again reuses a
simulated night whose ``truth.json`` matches the requested options.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dsa_stream import naming
from dsa_stream.cli.context import emit, emit_table, json_option
from dsa_stream.site import init_site

logger = logging.getLogger(__name__)

#: Demo defaults: small enough to run in a few minutes on two cores, real in layout.
DEMO_GROUPS = 12
DEMO_ANTENNAS = 32
DEMO_CHANNELS = 12
DEMO_CALIBRATOR = "3C147"
DEMO_SEED = 1
#: Directory (in the demo site) the night is simulated into.
NIGHT_DIRNAME = "night"
#: Imaging of the demo site (appended to its configuration): the demo's 32 antennas
#: imaged on baselines up to 1500 wavelengths (beam ~220 x 70 arcsec, 6 px across) on a
#: 4.3 deg field, so that ten groups image in minutes on a laptop. The defaults image
#: every baseline.
DEMO_IMAGING = """\
image:  # demo: the core baselines, quick (defaults: every baseline, 5400 x 3 arcsec)
  size_px: 1280
  cell_arcsec: 12.0
  uv_max_lambda: 1500.0
"""


def _options(incoming: Path, groups: int, antennas: int, channels: int, calibrator: str) -> Any:
    from dsa_stream.simulate import SimulationOptions

    return SimulationOptions(
        out_dir=incoming,
        n_groups=groups,
        antennas=antennas,
        channels_per_subband=channels,
        calibrator=calibrator,
        calibrator_group=1 if groups > 1 else 0,
        seed=DEMO_SEED,
        overwrite=True,
    )


def _existing_night(opts: Any) -> Any | None:
    """The truth of an already simulated night with exactly these options, if complete."""
    from dsa_stream.exceptions import SimulationError
    from dsa_stream.simulate import load_truth

    path = opts.out_dir / naming.NIGHT_TRUTH_FILENAME
    if not path.exists():
        return None
    try:
        truth = load_truth(path)
    except SimulationError:
        return None
    wanted = json.loads(opts.model_dump_json())
    if truth.options != wanted:
        return None
    files = [opts.out_dir / name for g in truth.groups for name in g.files]
    return truth if all(f.is_file() for f in files) else None


def _demo_imaging(config_path: Path) -> None:
    """Give a new demo site its quick imaging section (kept if already there)."""
    text = config_path.read_text()
    if not any(line.startswith("image:") for line in text.splitlines()):
        config_path.write_text(text + DEMO_IMAGING)


def _simulate(opts: Any) -> Any:
    from dsa_stream.simulate import load_truth, simulate_night

    console = Console(stderr=True)
    total = opts.n_groups * len(opts.subbands)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("simulating the night", total=total)
        result = simulate_night(opts, on_file=lambda _f: progress.advance(task))
    return load_truth(result.truth_path)


def _summary(root: Path, config: Path, truth: Any, reused: bool, seconds: float) -> dict[str, Any]:
    incoming = Path(truth.options["out_dir"])
    groups = []
    for g in truth.groups:
        size = sum((incoming / name).stat().st_size for name in g.files)
        groups.append(
            {
                "key": g.key,
                "files": len(g.files),
                "bytes": size,
                "calibrator_transit": g.contains_calibrator_transit,
            }
        )
    cal = truth.calibrator
    return {
        "site": str(root),
        "config": str(config),
        "incoming": str(incoming),
        "truth": str(incoming / naming.NIGHT_TRUTH_FILENAME),
        "reused_existing_simulation": reused,
        "antennas": len(truth.active_stations),
        "channels_per_subband": truth.channels_per_subband,
        "pointing_dec_deg": truth.pointing_dec_app_deg,
        "calibrator": None if cal is None else truth.options.get("calibrator"),
        "calibrator_transit_utc": None if cal is None else str(cal.transit_utc),
        "groups": groups,
        "total_bytes": sum(g["bytes"] for g in groups),
        "seconds": round(seconds, 1),
    }


def _render(d: dict[str, Any]) -> None:
    rows = [
        (
            g["key"],
            g["files"],
            f"{g['bytes'] / 1e6:.1f} MB",
            "yes" if g["calibrator_transit"] else "",
        )
        for g in d["groups"]
    ]
    emit_table(
        "simulated observations (group key = observation start, UTC)",
        ("group", "files", "size", "calibrator transit"),
        rows,
    )
    click.echo(f"site:        {d['site']}")
    click.echo(f"config:      {d['config']}")
    click.echo(f"input files: {d['incoming']} ({d['total_bytes'] / 1e9:.2f} GB)")
    click.echo(f"truth:       {d['truth']}")
    click.echo(
        f"array:       {d['antennas']} antennas, {d['channels_per_subband']} channels per "
        f"subband, pointing Dec {d['pointing_dec_deg']:.4f} deg"
    )
    if d["calibrator"]:
        click.echo(f"calibrator:  {d['calibrator']} transits at {d['calibrator_transit_utc']}")
    how = "reused the existing simulation" if d["reused_existing_simulation"] else "simulated"
    click.echo(f"time:        {d['seconds']:.1f} s ({how})")
    click.echo(f"next:        run-first-mosaic {d['incoming']} --site {d['site']}")


@click.command("demo")
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-site")
)
@click.option("--groups", type=int, default=DEMO_GROUPS, show_default=True)
@click.option("--antennas", type=int, default=DEMO_ANTENNAS, show_default=True)
@click.option("--channels-per-subband", type=int, default=DEMO_CHANNELS, show_default=True)
@click.option("--calibrator", default=DEMO_CALIBRATOR, show_default=True)
@json_option
def demo_cmd(
    directory: Path, groups: int, antennas: int, channels_per_subband: int, calibrator: str
) -> None:
    """Create a site in DIRECTORY and simulate a night with a calibrator transit into it."""
    t0 = time.monotonic()
    site = init_site(directory)
    _demo_imaging(site.config_path)
    incoming = site.root / NIGHT_DIRNAME
    opts = _options(incoming, groups, antennas, channels_per_subband, calibrator)
    truth = _existing_night(opts)
    reused = truth is not None
    if truth is None:
        logger.info("simulating %d observations into %s", groups, incoming)
        truth = _simulate(opts)
    else:
        logger.info("reusing the simulated night in %s", incoming)
    emit(_summary(site.root, site.config_path, truth, reused, time.monotonic() - t0), _render)
