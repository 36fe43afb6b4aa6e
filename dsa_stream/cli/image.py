"""``dsa-stream image``: one Measurement Set -> FITS image, beam, PB-corrected image, QA, PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from dsa_stream.cli.context import emit, emit_table, get_ctx, json_option
from dsa_stream.exceptions import ConfigError, ImagingError

#: Sources of a simulation truth file whose peak beam response reaches this enter QA.
TRUTH_MIN_RESPONSE = 0.05


def expected_from_truth(path: Path, group_key: str | None) -> list[Any]:
    """Expected sources of the group (by key, else the only group) of a simulator truth file.

    The truth's flux model is turned into a power law through 1.31 and 1.50 GHz (the
    band edges), anchored at 1.4 GHz.
    """
    from dsa_stream.imaging.options import ExpectedSource
    from dsa_stream.simulate import load_truth

    truth = load_truth(path)
    keys = [g.key for g in truth.groups]
    if group_key in keys:
        group: str | int = group_key  # type: ignore[assignment]
    elif len(keys) == 1:
        group = keys[0]
    else:
        raise ImagingError(f"{path}: no group {group_key!r} among {len(keys)} groups")
    out = []
    for seen in truth.sources_in_field(group, min_response=TRUTH_MIN_RESPONSE):
        src = truth.source(seen.name)
        lo, hi = (float(src.flux_jy(f)) for f in (1.31e9, 1.50e9))
        alpha = math.log(hi / lo) / math.log(1.50 / 1.31) if lo > 0 and hi > 0 else 0.0
        out.append(
            ExpectedSource(
                name=src.name,
                ra_deg=src.ra_deg % 360.0,
                dec_deg=src.dec_deg,
                flux_jy=float(src.flux_jy(1.4e9)),
                ref_freq_hz=1.4e9,
                spectral_index=alpha,
            )
        )
    return out


def _load_expected(path: Path | None, group_key: str | None) -> list[Any]:
    if path is None:
        return []
    from dsa_stream.imaging.expected import load_expected_csv, load_expected_json

    if path.suffix.lower() == ".csv":
        return load_expected_csv(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImagingError(f"cannot read {path}: {exc}") from exc
    if isinstance(doc, dict) and doc.get("format") == "dsa-stream-simulation-truth":
        return expected_from_truth(path, group_key)
    return load_expected_json(path)


def _options(params: dict[str, Any]) -> Any:
    from dsa_stream.imaging.options import ImagingOptions

    base = get_ctx().settings().image
    update = {k: v for k, v in params.items() if v is not None}
    try:
        return ImagingOptions.model_validate({**base.model_dump(), **update})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid imaging options: {problems}") from exc


def _summary(result: Any) -> dict[str, Any]:
    qa = result.qa
    return {
        "ms": str(result.ms_path),
        "backend": result.backend,
        "backend_version": result.backend_version,
        "group_key": result.group_key,
        "files": {k: (str(v) if v else None) for k, v in result.products.model_dump().items()},
        "rms_jy": qa.rms_jy,
        "residual_rms_jy": qa.residual_rms_jy,
        "peak_jy": qa.peak_jy,
        "dynamic_range": qa.dynamic_range,
        "beam": qa.beam.model_dump(),
        "ref_freq_hz": result.ref_freq_hz,
        "eff_freq_hz": result.eff_freq_hz,
        "qa_passed": qa.passed,
        "qa_failed": qa.failures(),
        "qa_checks": [c.model_dump() for c in qa.checks],
        "sources_checked": qa.n_checked,
        "flux_ratio_median": qa.flux_ratio_median,
        "position_offset_median_beams": qa.position_offset_median_beams,
        "sources": [s.model_dump() for s in qa.sources],
        "calibration": [c.model_dump() for c in result.calibration],
        "seconds": result.timings_s.get("total"),
    }


def _render(data: dict[str, Any]) -> None:
    beam = data["beam"]
    rows = [
        ("MS", data["ms"]),
        ("backend", f"{data['backend']} ({data['backend_version']})"),
        ("group", data["group_key"]),
        *((f"file: {k}", v) for k, v in data["files"].items() if v),
        ("rms (mJy/beam)", f"{data['rms_jy'] * 1e3:.3f}"),
        ("peak (Jy/beam)", f"{data['peak_jy']:.4g}"),
        ("dynamic range", f"{data['dynamic_range']:.0f}"),
        (
            "beam",
            f'{beam["bmaj_arcsec"]:.1f}" x {beam["bmin_arcsec"]:.1f}" PA {beam["bpa_deg"]:.0f}',
        ),
        ("reference frequency (MHz)", f"{data['ref_freq_hz'] / 1e6:.3f}"),
        ("sources checked", str(data["sources_checked"])),
    ]
    if data["flux_ratio_median"] is not None:
        rows.append(("median flux ratio", f"{data['flux_ratio_median']:.3f}"))
        rows.append(("median offset (beams)", f"{data['position_offset_median_beams']:.3f}"))
    rows += [(f"check: {c['name']}", c["status"]) for c in data["qa_checks"]]
    rows.append(("QA", "PASS" if data["qa_passed"] else "FAIL " + ", ".join(data["qa_failed"])))
    rows.append(("seconds", f"{data['seconds']:.1f}"))
    emit_table("image", ("item", "value"), rows)


@click.command("image")
@click.argument("ms", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output prefix DIR/STEM: writes STEM.image.fits, .pb.fits, .pbcor.fits, ...",
)
@click.option(
    "--backend",
    type=click.Choice(["wsclean", "tclean"]),
    default=None,
    help="Imager (default from the configuration: wsclean).",
)
@click.option(
    "--expected",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Sources QA should find: a simulator truth.json, a CSV or a JSON list.",
)
@click.option("--size", "size_px", type=int, default=None, help="Image width = height (px).")
@click.option("--cell", "cell_arcsec", type=float, default=None, help="Pixel size (arcsec).")
@click.option("--niter", type=int, default=None, help="Clean iteration limit.")
@click.option("--uv-max", "uv_max_lambda", type=float, default=None, help="Longest uv (lambda).")
@click.option("--group-key", default=None, help="Group key (default: from the MS).")
@json_option
def image_cmd(
    ms: Path, out: Path, expected: Path | None, group_key: str | None, **params: Any
) -> None:
    """Image the Measurement Set MS and write the FITS products, QA and a PNG at OUT."""
    from dsa_stream.imaging.api import image_ms
    from dsa_stream.imaging.msinfo import read_ms_info

    ctx = get_ctx()
    options = _options(params)
    key = group_key or read_ms_info(ms).group_key()
    sources = _load_expected(expected, key)
    result = image_ms(
        ms,
        out,
        options,
        expected=sources,
        group_key=key,
        config_hash=ctx.settings().config_hash(),
    )
    emit(_summary(result), _render)
