"""``dsa-stream convert``: one group of subband files -> one validated Measurement Set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dsa_stream.cli.context import emit, emit_table, json_option
from dsa_stream.exceptions import ConfigError


def _parse_centre(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        ra, dec = (float(v) for v in value.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"expected RA,DEC in degrees, got {value!r}") from exc
    return (ra, dec)


def _options(params: dict[str, Any]) -> Any:
    from dsa_stream.conversion.options import ConvertOptions, ValidationOptions

    mode = params["mode"]
    if params["phase_center"] is not None:
        mode = "icrs"
    try:
        return ConvertOptions(
            mode=mode,
            phase_center_deg=params["phase_center"],
            phase_center_name=params["field_name"],
            channel_average=params["channel_average"],
            apply_tables=tuple(params["apply"]),
            weight_spectrum=params["weight_spectrum"],
            on_existing=params["on_existing"],
            validation=ValidationOptions(
                casatools=params["casatools_check"], casacore35=params["casacore35_check"]
            ),
        )
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise ConfigError(f"invalid conversion options: {problems}") from exc


def _summary(result: Any) -> dict[str, Any]:
    doc = result.model_dump(mode="json")
    doc["meridian_centres"] = len(result.meridian_centres)
    return doc


def _render(data: dict[str, Any]) -> None:
    centre = data["phase_center_deg"]
    rows = [
        ("MS", data["ms_path"]),
        ("adopted existing", "yes" if data["adopted"] else "no"),
        ("mode", data["mode"]),
        ("phase centre (ICRS deg)", "-" if centre is None else f"{centre[0]:.5f}, {centre[1]:.5f}"),
        ("pointing Dec (deg)", f"{data['pointing_dec_deg']:.4f}"),
        (
            "subbands",
            f"{len(data['subbands_present'])} present, missing {data['subbands_missing']}",
        ),
        ("rows x channels", f"{data['n_rows']} x {data['n_channels']}"),
        ("band (MHz)", f"{data['freq_min_hz'] / 1e6:.3f} - {data['freq_max_hz'] / 1e6:.3f}"),
        ("calibration applied", ", ".join(t["path"] for t in data["applied_tables"]) or "none"),
        ("size (MB)", f"{data['size_bytes'] / 1e6:.1f}"),
        ("seconds", f"{data['timings_s'].get('total', 0.0):.1f}"),
    ]
    rows += [(f"check: {c['name']}", f"{c['status']} {c['detail']}") for c in data["checks"]]
    rows += [("warning", w) for w in data["warnings"]]
    if data["quarantined"]:
        rows.append(("previous output moved to", data["quarantined"]))
    emit_table("conversion", ("item", "value"), rows)


@click.command("convert")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Destination Measurement Set.",
)
@click.option(
    "--mode",
    type=click.Choice(["midpoint", "fields"]),
    default="midpoint",
    show_default=True,
    help="midpoint: one phase centre (group mid-time meridian); fields: one field per integration.",
)
@click.option(
    "--phase-center",
    callback=_parse_centre,
    default=None,
    metavar="RA,DEC",
    help="Phase to this ICRS position (degrees) instead, e.g. a calibrator.",
)
@click.option("--field-name", default=None, help="FIELD name (default from the mode).")
@click.option(
    "--channel-average",
    type=int,
    default=1,
    show_default=True,
    help="Channels averaged (divides 48).",
)
@click.option(
    "--apply",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="CASA B/G table to apply while converting (repeatable).",
)
@click.option("--weight-spectrum", is_flag=True, help="Also write WEIGHT_SPECTRUM.")
@click.option(
    "--on-existing",
    type=click.Choice(["adopt", "replace", "fail"]),
    default="adopt",
    show_default=True,
    help="What to do when OUT exists.",
)
@click.option(
    "--casatools-check",
    type=click.Choice(["require", "warn", "off"]),
    default="require",
    show_default=True,
    help="Open the result with casatools (child process).",
)
@click.option(
    "--casacore35-check",
    type=click.Choice(["require", "warn", "off"]),
    default="warn",
    show_default=True,
    help="Open the result with Debian's casacore 3.5 (/usr/bin/python3).",
)
@json_option
def convert_cmd(files: tuple[Path, ...], out: Path, **params: Any) -> None:
    """Convert the subband FILES of one observation into the Measurement Set OUT."""
    from dsa_stream.conversion.api import convert_group

    options = _options(params)
    console = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("converting", total=1)

        def on_progress(step: str, done: int, total: int) -> None:
            progress.update(task, description=step, completed=done, total=max(total, 1))

        result = convert_group(list(files), out, options, progress=on_progress)
    emit(_summary(result), _render)
