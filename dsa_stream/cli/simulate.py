"""``dsa-stream simulate``: write simulated DSA-110 subband files and their truth."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dsa_stream import instrument
from dsa_stream.cli.context import emit, emit_table, json_option
from dsa_stream.exceptions import SimulationError


def _parse_time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from exc
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _parse_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"not a date YYYY-MM-DD: {value!r}") from exc


def _build_options(params: dict[str, Any]) -> Any:
    from dsa_stream.simulate import CorruptionOptions, SimulationOptions, SkyOptions, WriterOptions

    fields: dict[str, Any] = {
        "out_dir": params["out_dir"],
        "n_groups": params["groups"],
        "start": params["start"],
        "antennas": params["antennas"],
        "seed": params["seed"],
        "channels_per_subband": params["channels_per_subband"],
        "dec_deg": params["dec"],
        "calibrator": params["calibrator"],
        "calibrator_group": params["calibrator_group"],
        "gap_minutes": params["gap_minutes"],
        "primary_beam": params["beam"],
        "overwrite": params["overwrite"],
    }
    if params["date"] is not None:
        fields["date"] = params["date"]
    try:
        sky = (
            SkyOptions()
            if params["density"] is None
            else SkyOptions(density_per_deg2=params["density"])
        )
        return SimulationOptions(
            **fields,
            sky=sky,
            corruption=CorruptionOptions(
                noise=params["noise"], gains=params["gains"], bandpass=params["bandpass"]
            ),
            writer=WriterOptions(
                mode=params["write_mode"],
                cadence_s=params["cadence_s"],
                write_seconds=params["write_seconds"],
            ),
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise SimulationError(f"invalid simulation options: {problems}") from exc


def _summary(result: Any) -> dict[str, Any]:
    return {
        "out_dir": str(result.out_dir),
        "truth": str(result.truth_path),
        "groups": [
            {
                "index": g.index,
                "key": g.key,
                "files": len(g.files),
                "bytes": g.size_bytes,
                "calibrator_transit": g.contains_calibrator_transit,
            }
            for g in result.groups
        ],
        "calibrator_group": result.calibrator_group,
        "files": result.n_files,
        "total_bytes": result.total_bytes,
        "seconds": round(result.elapsed_s, 3),
        "stopped": result.stopped,
    }


def _render(data: dict[str, Any]) -> None:
    rows = [
        (
            g["index"],
            g["key"],
            g["files"],
            f"{g['bytes'] / 1e6:.1f} MB",
            "yes" if g["calibrator_transit"] else "",
        )
        for g in data["groups"]
    ]
    emit_table("simulated groups", ("group", "key", "files", "size", "calibrator"), rows)
    cal = data["calibrator_group"]
    emit_table(
        None,
        ("groups", "calibrator group", "files", "total size", "seconds", "truth"),
        [
            (
                len(data["groups"]),
                "-" if cal is None else cal,
                data["files"],
                f"{data['total_bytes'] / 1e6:.1f} MB",
                f"{data['seconds']:.1f}",
                data["truth"],
            )
        ],
    )


@click.command("simulate")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--groups", type=int, default=1, show_default=True, help="Number of observations.")
@click.option(
    "--start",
    callback=_parse_time,
    help="Start of the first observation, ISO UTC "
    "(default: from the calibrator transit, else 2025-10-02T00:00:00).",
)
@click.option("--antennas", type=int, default=96, show_default=True, help="Active stations.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw.")
@click.option(
    "--channels-per-subband",
    type=int,
    default=instrument.N_CHAN_PER_SUBBAND,
    show_default=True,
    help="Channels per subband (must divide 48).",
)
@click.option(
    "--dec",
    type=float,
    default=None,
    help="Apparent pointing Dec, deg (default: calibrator's, else 54.5734).",
)
@click.option("--calibrator", default=None, help="Catalogue calibrator to put in the sky.")
@click.option(
    "--calibrator-group",
    type=int,
    default=0,
    show_default=True,
    help="Group in whose middle the calibrator transits (without --start).",
)
@click.option(
    "--date",
    callback=_parse_date,
    help="UTC date of the calibrator transit (without --start; default 2025-10-02).",
)
@click.option(
    "--gap-minutes",
    type=float,
    default=0.0,
    show_default=True,
    help="Gap between consecutive observations.",
)
@click.option("--density", type=float, default=None, help="Random sources per square degree.")
@click.option("--beam/--no-beam", default=True, show_default=True, help="Apply the primary beam.")
@click.option("--noise/--no-noise", default=True, show_default=True, help="Add thermal noise.")
@click.option("--gains/--no-gains", default=True, show_default=True, help="Apply complex gains.")
@click.option("--bandpass/--no-bandpass", default=True, show_default=True, help="Apply bandpasses.")
@click.option(
    "--cadence-s",
    type=float,
    default=None,
    help="Release observations this many seconds apart in real time.",
)
@click.option(
    "--write-mode",
    type=click.Choice(["direct", "rename", "slow"]),
    default="direct",
    show_default=True,
    help="How files appear (see the docs of the simulator).",
)
@click.option(
    "--write-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="Duration of one observation's writing in slow mode.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
@json_option
def simulate_cmd(**params: Any) -> None:
    """Write simulated DSA-110 subband files and truth.json into OUT_DIR."""
    from dsa_stream.simulate import simulate_night

    opts = _build_options(params)
    n_files = opts.n_groups * len(opts.subbands)
    console = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("simulating", total=n_files)
        result = simulate_night(opts, on_file=lambda _f: progress.advance(task))
    emit(_summary(result), _render)
