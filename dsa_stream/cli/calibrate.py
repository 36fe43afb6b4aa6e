"""``dsa-stream calibrate ...``: find calibrator transits, solve table sets, apply them.

* ``find-transits FILES_OR_MS...``: which catalogue calibrators pass through the beam
  during a group (subband files, their directory, or an MS), when, and how well.
* ``solve GROUP_OR_MS...``: solve a bandpass + gain set on a calibrator group given as
  a registered group key, a directory or list of subband files, or an MS; registers
  the set when the site's registry exists (``--no-register`` to skip).
* ``apply MS``: apply the registered set valid at the MS's observation time and Dec
  (or ``--tables``) with CASA applycal.

Observation times always come from the data.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from dsa_stream.cli.context import emit, emit_table, get_ctx, json_option
from dsa_stream.exceptions import CalibrationError, DsaStreamError, RegistryError

logger = logging.getLogger(__name__)

#: Exit status of ``apply`` when no valid set exists (the group would wait).
EXIT_NO_CALIBRATION = 3


@click.group("calibrate")
def calibrate_group() -> None:
    """Calibrator transits, bandpass + gain solves, and their application."""


@contextmanager
def _status(label: str) -> Iterator[Any]:
    """A spinner on stderr whose text follows the slow steps (quiet with --json)."""
    console = Console(stderr=True)
    if get_ctx().json_output or not console.is_terminal:
        yield lambda text: logger.info("%s: %s", label, text)
        return
    with console.status(f"{label}...") as status:
        yield lambda text: status.update(f"{label}: {text}...")


def _fmt_window(window: Any) -> str:
    if window is None:
        return "-"
    return f"{window.valid_from:%Y-%m-%d %H:%M} .. {window.valid_to:%Y-%m-%d %H:%M}"


# -- find-transits ----------------------------------------------------------------------------


def _render_transits(reports: list[dict[str, Any]]) -> None:
    for data in reports:
        verdict = (
            f"calibrator group ({data['calibrator']})" if data["calibrator"] else "no calibrator"
        )
        emit_table(
            f"group {data['start_utc'][:19]} .. {data['end_utc'][11:19]}, pointing Dec "
            f"{data['pointing_dec_deg']:.4f} deg: {verdict}",
            (
                "source",
                "S (Jy)",
                "transit (UTC)",
                "in group",
                "closest (deg)",
                "peak",
                "mean",
                "apparent (Jy)",
                "usable",
            ),
            (
                (
                    s["name"],
                    f"{s['flux_jy']:.2f}",
                    s["transit_utc"][:23],
                    "yes" if s["transit_in_group"] else "no",
                    f"{s['closest_separation_deg']:.3f}",
                    f"{s['peak_response']:.3f}",
                    f"{s['mean_response']:.3f}",
                    f"{s['apparent_flux_jy']:.2f}",
                    "yes" if s["usable"] else s["reason"],
                )
                for s in data["sources"]
            ),
        )


@calibrate_group.command("find-transits")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--min-flux", type=float, default=None, help="Smallest apparent flux (Jy).")
@click.option("--min-response", type=float, default=None, help="Smallest peak beam response.")
@json_option
def find_transits_cmd(
    inputs: tuple[Path, ...], min_flux: float | None, min_response: float | None
) -> None:
    """Calibrator transits during each group of INPUTS (subband files, directories, MSs)."""
    from dsa_stream.calibration.observation import expand_inputs, read_observation
    from dsa_stream.calibration.options import solve_options
    from dsa_stream.calibration.transits import find_transits

    opts = solve_options(get_ctx().settings().calibrate).transit
    update = {
        k: v
        for k, v in (("min_apparent_flux_jy", min_flux), ("min_response", min_response))
        if v is not None
    }
    opts = opts.model_copy(update=update)
    reports = [
        find_transits(read_observation(group), opts).model_dump(mode="json")
        for group in expand_inputs(list(inputs))
    ]
    emit(reports, _render_transits)


# -- solve ----------------------------------------------------------------------------------------


def _registry_store(required: bool) -> Any:
    """A job store on the site's registry, or None when it does not exist (and not required)."""
    from dsa_stream.registry import JobStore
    from dsa_stream.registry.migrate import require_current_schema

    settings = get_ctx().settings()
    store = JobStore.from_settings(settings)
    try:
        require_current_schema(store.engine)
    except RegistryError as exc:
        store.close()
        if required:
            raise
        logger.info("not registering: %s", exc)
        return None
    return store


def _resolve_inputs(args: tuple[str, ...]) -> list[Path]:
    """Paths as given, or the files of a registered group key."""
    from dsa_stream import naming

    if len(args) == 1 and not Path(args[0]).exists():
        try:
            naming.parse_group_key(args[0])
        except DsaStreamError as exc:
            raise click.BadParameter(f"{args[0]!r}: no such file and not a group key") from exc
        from dsa_stream.pipeline.calibration import Roots, group_id_of, group_inputs

        store = _registry_store(required=True)
        try:
            with store.engine.connect() as conn:
                gid = group_id_of(conn, args[0])
                if gid is None:
                    raise CalibrationError(f"group {args[0]} is not in the registry")
                got = group_inputs(conn, Roots.of(get_ctx().settings()), gid)
        finally:
            store.close()
        if got.files:
            return list(got.files)
        if got.ms_path is not None:
            return [got.ms_path]
        raise CalibrationError(f"group {args[0]} has neither input files nor an MS")
    missing = [a for a in args if not Path(a).exists()]
    if missing:
        raise click.BadParameter(f"not found: {', '.join(missing)}")
    return _calibrator_group([Path(a) for a in args])


def _calibrator_group(paths: list[Path]) -> list[Path]:
    """The one group of ``paths`` (files, directories, MS) with a usable calibrator transit."""
    from dsa_stream.calibration.observation import expand_inputs, read_observation
    from dsa_stream.calibration.options import solve_options
    from dsa_stream.calibration.transits import find_transits

    groups = expand_inputs(paths)
    if len(groups) == 1:
        return groups[0]
    opts = solve_options(get_ctx().settings().calibrate).transit
    usable = [g for g in groups if find_transits(read_observation(g), opts).is_calibrator_group]
    if len(usable) != 1:
        raise CalibrationError(
            f"the inputs hold {len(groups)} groups, {len(usable)} of them with a usable "
            "calibrator transit: give one group"
        )
    return usable[0]


def _render_solve(data: dict[str, Any]) -> None:
    qa = data["qa"]
    rows = [
        ("set", data["set_name"]),
        ("calibrator", f"{data['calibrator']['name']} ({data['calibrator']['flux_jy']:.2f} Jy)"),
        ("transit (UTC)", data["transit"]),
        (
            "peak / mean beam response",
            f"{data['calibrator']['peak_response']:.3f} / "
            f"{data['calibrator']['mean_response']:.3f}",
        ),
        ("pointing Dec (deg)", f"{data['dec_deg']:.4f}"),
        (
            "reference antenna",
            f"{data['refant']} (candidates {', '.join(data['refant_candidates'])})",
        ),
        (
            "flagged (cross)",
            f"{data['flagging']['final_fraction']:.2%} ({data['flagging']['flagger']})",
        ),
        ("QA", "passed" if qa["passed"] else "FAILED: " + "; ".join(qa["problems"])),
        (
            "bandpass flagged / SNR",
            f"{qa['bandpass_flagged']:.2%} / {qa['bandpass_snr_median']:.0f}",
        ),
        ("gains flagged / SNR", f"{qa['gain_flagged']:.2%} / {qa['gain_snr_median']:.0f}"),
        ("antennas solved", f"{qa['n_antennas_solved']} of {qa['n_antennas_data']}"),
    ]
    rows += [("warning", w) for w in qa["warnings"]]
    for t in data["tables"]:
        window = t["window"]
        span = f" valid {window['valid_from'][:16]} .. {window['valid_to'][:16]}" if window else ""
        rows.append((f"table {t['table_type']}", f"{t['path']}{span}"))
    rows += [("plot", p) for p in data["plots"]]
    reg = data.get("registered")
    rows.append(
        ("registered", f"v{reg['version']} ({reg['status']})" if reg else "no (no registry)")
    )
    rows.append(("seconds", f"{data['timings_s'].get('total', 0.0):.1f}"))
    emit_table("calibration solve", ("item", "value"), rows)


@calibrate_group.command("solve")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Parent directory of the set (default: <products>/caltables).",
)
@click.option("--calibrator", default=None, help="Solve on this catalogue source.")
@click.option(
    "--refant", multiple=True, help="Reference antenna name (repeatable, preferred first)."
)
@click.option(
    "--register/--no-register",
    default=None,
    help="Register the set (default: when the site's registry exists).",
)
@json_option
def solve_cmd(
    inputs: tuple[str, ...],
    out_dir: Path | None,
    calibrator: str | None,
    refant: tuple[str, ...],
    register: bool | None,
) -> None:
    """Solve bandpass + gains on a calibrator group (group key, files, directory or MS)."""
    from dsa_stream.calibration.options import solve_options
    from dsa_stream.calibration.solve import solve_group
    from dsa_stream.pipeline.calibration import Roots, caltables_dir, register_manual

    settings = get_ctx().settings()
    opts = solve_options(settings.calibrate)
    if calibrator:
        opts = opts.model_copy(update={"calibrator": calibrator})
    if refant:
        opts = opts.model_copy(
            update={"parameters": opts.parameters.model_copy(update={"refant": refant})}
        )
    paths = _resolve_inputs(inputs)
    with _status("calibration solve") as progress:
        result = solve_group(paths, out_dir or caltables_dir(settings), opts, progress=progress)
    data = result.model_dump(mode="json")
    data["registered"] = None
    store = _registry_store(required=bool(register)) if register is not False else None
    if store is not None:
        try:
            reg = register_manual(store, result, Roots.of(settings), settings)
            data["registered"] = reg.model_dump(mode="json")
        finally:
            store.close()
    emit(data, _render_solve)
    if not result.passed:
        click.echo(f"set {result.set_name} failed QA: it will not be applied", err=True)


# -- apply ----------------------------------------------------------------------------------------


def _render_apply(data: dict[str, Any]) -> None:
    rows = [
        ("MS", data["ms_path"]),
        ("observation time (UTC)", data["obs_time"]),
        ("pointing Dec (deg)", f"{data['dec_deg']:.4f}"),
        ("set", data.get("set_name") or "-"),
        ("selection", data.get("selection_reason") or "tables given"),
        ("tables", ", ".join(data["tables"])),
        ("calibrated column", data["data_column"]),
        ("seconds", f"{data['timings_s'].get('total', 0.0):.1f}"),
    ]
    emit_table("calibration applied", ("item", "value"), rows)


def _select(obs: Any) -> Any:
    from dsa_stream.calibration.options import selection_options
    from dsa_stream.pipeline.calibration import Roots, select_for_observation

    settings = get_ctx().settings()
    store = _registry_store(required=True)
    try:
        with store.engine.connect() as conn:
            return select_for_observation(
                conn, obs, Roots.of(settings), selection_options(settings.calibrate)
            )
    finally:
        store.close()


@calibrate_group.command("apply")
@click.argument("ms", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--tables",
    "tables_",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Apply these tables instead of selecting from the registry (repeatable).",
)
@json_option
def apply_cmd(ms: Path, tables_: tuple[Path, ...]) -> None:
    """Apply calibration to MS: the registered set valid at its observation time and Dec."""
    from dsa_stream.calibration.apply import apply_to_ms
    from dsa_stream.calibration.observation import observation_from_ms
    from dsa_stream.calibration.options import apply_options

    settings = get_ctx().settings()
    obs = observation_from_ms(ms)
    set_name, reason = None, None
    if not tables_:
        selection = _select(obs)
        if selection.chosen is None:
            click.echo(f"error: {selection.reason}", err=True)
            for rej in selection.rejected:
                click.echo(f"  {rej.set_name} v{rej.version}: {rej.reason}", err=True)
            sys.exit(EXIT_NO_CALIBRATION)
        tables_ = selection.tables
        set_name, reason = selection.chosen.set_name, selection.reason
    with _status("applycal") as progress:
        progress(f"{len(tables_)} table(s)")
        result = apply_to_ms(
            ms, tables_, apply_options(settings.calibrate), set_name=set_name, observation=obs
        )
    emit(result.model_dump(mode="json") | {"selection_reason": reason}, _render_apply)
