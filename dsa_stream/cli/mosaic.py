"""``dsa-stream mosaic``: plan mosaic windows, build a mosaic from images and beams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError

from dsa_stream.cli.context import emit, emit_table, get_ctx, json_option
from dsa_stream.exceptions import ConfigError

#: Frequency (Hz) at which a simulation truth file's source spectra are evaluated.
BAND_CENTRE_HZ = 1.405e9


@click.group("mosaic")
def mosaic_group() -> None:
    """Mosaic windows (10 consecutive groups) and primary-beam-weighted mosaics."""


# -- plan ---------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read JSON {path}: {exc}") from exc


def _plan_inputs(doc: Any) -> tuple[list[Any], list[Any]]:
    from dsa_stream.mosaic.planner import GroupRecord, PreviousWindow

    if isinstance(doc, list):
        doc = {"groups": doc}
    if not isinstance(doc, dict) or "groups" not in doc:
        raise ConfigError("expected a JSON list of groups or {'groups': [...], 'previous': [...]}")
    try:
        groups = TypeAdapter(list[GroupRecord]).validate_python(doc["groups"])
        previous = TypeAdapter(list[PreviousWindow]).validate_python(doc.get("previous", []))
    except ValidationError as exc:
        raise ConfigError(f"invalid group or window records: {exc}") from exc
    return groups, previous


def _render_plan(data: dict[str, Any]) -> None:
    rows = []
    for w in data["windows"]:
        keys = [m["group_key"] for m in w["members"]]
        why = "; ".join(
            f"{r['kind']}: {r['detail']}" + (f" ({r['group_key']})" if r["group_key"] else "")
            for r in w["reasons"]
        )
        rows.append(
            (
                w["window_key"],
                w["version"],
                w["status"],
                w["state"],
                f"{w['n_members_done']}/{len(keys)}",
                f"{keys[0][11:]}..{keys[-1][11:]}",
                f"{w['dec_deg']:.3f}",
                "; ".join(w["changes"]) or why,
            )
        )
    columns = ("window", "ver", "status", "state", "done", "members", "Dec", "reasons / changes")
    emit_table("mosaic windows", columns, rows)
    for o in data["obsolete"]:
        click.echo(f"obsolete window {o['window_key']} v{o['version']}: {o['reason']}")


@mosaic_group.command("plan")
@click.option(
    "--groups",
    "groups_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON list of group records, or {'groups': [...], 'previous': [...]}.",
)
@click.option("--stride", type=int, default=None, help="Override mosaic.planner.stride.")
@click.option("--window-size", type=int, default=None, help="Override mosaic.planner.window_size.")
@json_option
def plan_cmd(groups_path: Path, stride: int | None, window_size: int | None) -> None:
    """Plan mosaic windows from group records (pure: nothing is written)."""
    from dsa_stream.mosaic.planner import plan_windows

    state = get_ctx()
    state.override("mosaic.planner.stride", stride)
    state.override("mosaic.planner.window_size", window_size)
    groups, previous = _plan_inputs(_read_json(groups_path))
    result = plan_windows(groups, state.settings().mosaic.planner, previous)
    data = result.model_dump(mode="json")
    for doc, window in zip(data["windows"], result.windows, strict=True):
        doc["state"] = window.registry_state()
        doc["n_members_done"] = window.n_members_done
    emit(data, _render_plan)


# -- build --------------------------------------------------------------------------------


def _split_pair(text: str) -> tuple[Path, Path]:
    """IMAGE:BEAM, where either path may itself contain colons (group keys do)."""
    candidates = [
        (Path(text[:i]), Path(text[i + 1 :]))
        for i, ch in enumerate(text)
        if ch == ":" and Path(text[:i]).is_file() and Path(text[i + 1 :]).is_file()
    ]
    if len(candidates) != 1:
        raise click.BadParameter(
            f"{text!r} is not IMAGE:BEAM with both files present"
            + (" (ambiguous)" if candidates else "")
        )
    return candidates[0]


def _expected_sources(path: Path | None) -> list[Any]:
    from dsa_stream.mosaic.options import ExpectedSource

    if path is None:
        return []
    doc = _read_json(path)
    if isinstance(doc, dict) and str(doc.get("format", "")).endswith("simulation-truth"):
        from dsa_stream.simulate.truth import load_truth

        return [
            ExpectedSource(
                ra_deg=s.ra_deg,
                dec_deg=s.dec_deg,
                flux_jy=float(s.flux_jy(BAND_CENTRE_HZ)),
                name=getattr(s, "name", None),
            )
            for s in load_truth(path).sources
        ]
    items = doc.get("sources", doc) if isinstance(doc, dict) else doc
    try:
        return TypeAdapter(list[ExpectedSource]).validate_python(items)
    except ValidationError as exc:
        raise ConfigError(f"invalid expected sources in {path}: {exc}") from exc


def _render_build(data: dict[str, Any]) -> None:
    qa = data["qa"]
    rows = [
        ("mosaic", data["mosaic_path"]),
        ("noise map", data["noise_path"]),
        ("preview", data["preview_path"] or "-"),
        ("window / version", f"{data['window_key']} v{data['version']}"),
        ("images", len(data["tiles"])),
        ("grid (nx x ny)", f"{data['shape'][1]} x {data['shape'][0]}"),
        ("centre (RA, Dec deg)", f"{data['crval_deg'][0]:.4f}, {data['crval_deg'][1]:.4f}"),
        (
            "noise measured / expected (mJy/beam)",
            f"{qa['noise_measured_jy'] * 1e3:.3f} / {qa['noise_expected_min_jy'] * 1e3:.3f}",
        ),
        ("noise ratio", f"{qa['noise_ratio']:.3f}"),
        ("peak (Jy/beam) / dynamic range", f"{qa['peak_jy']:.4f} / {qa['dynamic_range']:.0f}"),
        ("coverage", f"{qa['coverage_fraction']:.3f}"),
        ("sources found / checked", f"{qa['n_sources_found']} / {qa['n_sources_checked']}"),
        ("median flux ratio", qa["flux_ratio_median"] or "-"),
        ("median offset (beam)", qa["offset_beams_median"] or "-"),
        ("QA", "passed" if qa["passed"] else "FAILED: " + "; ".join(qa["failures"])),
        ("seconds", f"{data['timings_s'].get('total', 0.0):.1f}"),
    ]
    emit_table("mosaic", ("item", "value"), rows)


@mosaic_group.command("build")
@click.argument("pairs", nargs=-1, required=True)
@click.option(
    "--out",
    "out_prefix",
    required=True,
    type=click.Path(path_type=Path),
    help="Output prefix: writes PREFIX.fits, PREFIX_noise.fits, PREFIX.png, PREFIX_qa.json.",
)
@click.option(
    "--expected",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Expected sources: JSON list of {ra_deg, dec_deg, flux_jy}, or a simulation truth.json.",
)
@click.option("--window-key", default=None, help="Window key (default: first member's group key).")
@click.option("--window-version", "version", type=int, default=1, show_default=True)
@json_option
def build_cmd(
    pairs: tuple[str, ...],
    out_prefix: Path,
    expected: Path | None,
    window_key: str | None,
    version: int,
) -> None:
    """Coadd images IMAGE:BEAM ... into a primary-beam-weighted mosaic (with QA)."""
    from dsa_stream.mosaic.api import build_mosaic
    from dsa_stream.mosaic.fitsio import tile_from_fits

    settings = get_ctx().settings()
    tiles = [tile_from_fits(*_split_pair(p)) for p in pairs]
    result = build_mosaic(
        tiles,
        out_prefix,
        settings.mosaic,
        window_key=window_key,
        version=version,
        config_hash=settings.config_hash(),
        expected_sources=_expected_sources(expected),
    )
    emit(result.model_dump(mode="json"), _render_build)
