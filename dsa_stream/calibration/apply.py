"""Apply a table set to a target group: CASA applycal on its MS, or on the fly while converting.

* :func:`apply_to_ms` runs ``applycal`` (bandpass then gains, ``interp`` nearest,
  ``calwt`` False, flags of missing/flagged solutions applied) in a CASA child process
  with a hard timeout. The calibrated data are in CORRECTED_DATA (image that column).
* :func:`convert_calibrated` converts the group's subband files with the tables
  applied inside the conversion (:mod:`dsa_stream.conversion.calapply`, equal to
  applycal within 6e-7): DATA is then calibrated and no CORRECTED_DATA is written.

Both record what was applied in ``DSA_STREAM_CALIBRATION.json`` inside the MS (tables,
set name, observation time and Dec of the group, method); applycal also writes the
MS HISTORY. Tables are checked first: complex B/G Jones, one spectral window, and a
bandpass with exactly the MS's channels (the averaging of the target must match the
calibrator's).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from dsa_stream import naming
from dsa_stream.calibration.observation import GroupObservation, observation_from_ms
from dsa_stream.calibration.options import ApplyOptions
from dsa_stream.exceptions import CalibrationError
from dsa_stream.toolrun import call_in_subprocess

logger = logging.getLogger(__name__)

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
#: Apply order of CASA Jones types.
_ORDER = {"B": 0, "G": 1, "T": 2}
_FREQ_TOLERANCE_HZ = 1.0


class ApplyResult(BaseModel):
    """What was applied to a target group."""

    model_config = _FROZEN

    ms_path: Path
    method: Literal["applycal", "on-the-fly"]
    data_column: Literal["CORRECTED_DATA", "DATA"]
    """The column that holds the calibrated data."""
    tables: tuple[Path, ...]
    """Applied tables, in apply order."""
    set_name: str | None
    obs_time: datetime
    """The group's observation time (middle) from its data."""
    dec_deg: float
    timings_s: dict[str, float]


def _table_meta(path: Path) -> tuple[str, np.ndarray]:
    from casacore import tables

    if not (Path(path) / "table.dat").exists():
        raise CalibrationError(f"{path}: not a CASA calibration table")
    with tables.table(str(path), ack=False) as tb:
        kw = tb.getkeywords()
        spw = np.unique(tb.getcol("SPECTRAL_WINDOW_ID"))
    viscal = str(kw.get("VisCal", ""))
    if kw.get("ParType", "Complex") != "Complex" or viscal.split()[:1] not in (["B"], ["G"], ["T"]):
        raise CalibrationError(
            f"{path}: only complex B/G/T Jones tables can be applied ({viscal!r})"
        )
    if spw.size != 1:
        raise CalibrationError(f"{path}: solutions for {spw.size} spectral windows")
    with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as sw:
        freqs = np.asarray(sw.getcell("CHAN_FREQ", int(spw[0])), dtype=np.float64)
    return viscal.split()[0], freqs


def order_and_check(tables_: Sequence[Path], ms_freqs_hz: np.ndarray | None) -> tuple[Path, ...]:
    """Tables in apply order (B, then G, then T), checked against the MS channels.

    Raises:
        CalibrationError: for a missing or unusable table, or a bandpass whose channels
            are not the MS's.
    """
    if not tables_:
        raise CalibrationError("no calibration tables given")
    metas = [(Path(t), *_table_meta(Path(t))) for t in tables_]
    for path, kind, freqs in metas:
        if ms_freqs_hz is None or freqs.size == 1:
            continue
        if freqs.size != ms_freqs_hz.size or not np.allclose(
            freqs, ms_freqs_hz, atol=_FREQ_TOLERANCE_HZ, rtol=0.0
        ):
            raise CalibrationError(
                f"{path} ({kind} Jones) has {freqs.size} channels that are not the "
                f"{ms_freqs_hz.size} channels of the MS (channel averaging must match)"
            )
    metas.sort(key=lambda m: _ORDER[m[1]])
    return tuple(m[0] for m in metas)


def _ms_freqs(ms: Path) -> np.ndarray:
    from casacore import tables

    with tables.table(f"{ms}/SPECTRAL_WINDOW", ack=False) as sw:
        return np.asarray(sw.getcell("CHAN_FREQ", 0), dtype=np.float64)


def write_provenance(ms: Path, record: dict[str, Any]) -> Path:
    """Write the calibration record of an MS (atomically) and return its path."""
    path = Path(ms) / naming.MS_CALIBRATION_RECORD
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    tmp.replace(path)
    return path


def read_provenance(ms: Path) -> dict[str, Any] | None:
    """The calibration record of an MS, or None when it was never calibrated."""
    path = Path(ms) / naming.MS_CALIBRATION_RECORD
    if not path.exists():
        return None
    return dict(json.loads(path.read_text()))


def _record(result: ApplyResult) -> dict[str, Any]:
    return result.model_dump(mode="json") | {"record": "dsa-stream calibration provenance"}


def apply_to_ms(
    ms: Path,
    tables_: Sequence[Path],
    opts: ApplyOptions | None = None,
    *,
    set_name: str | None = None,
    observation: GroupObservation | None = None,
    cancel: threading.Event | None = None,
) -> ApplyResult:
    """Applycal ``tables_`` to ``ms`` in a CASA child process (see module docstring).

    Raises:
        ObservationTimeError: the MS's observation time cannot be read.
        CalibrationError / ToolError: unusable tables, or applycal failed.
    """
    opts = opts or ApplyOptions()
    ms = Path(ms)
    obs = observation or observation_from_ms(ms)
    ordered = order_and_check(tables_, _ms_freqs(ms))
    t0 = time.perf_counter()
    got = call_in_subprocess(
        "dsa_stream.calibration.casa_steps:apply_tables",
        {
            "ms": str(ms),
            "workdir": str(ms.parent),
            "gaintables": [str(p) for p in ordered],
            "interp": opts.interp,
            "calwt": opts.calwt,
        },
        timeout_s=opts.timeout_s,
        log_path=ms.parent / f"{ms.name}.applycal.log",
        label="CASA applycal",
        cancel=cancel,
    )
    timings = {**got["timings_s"], "total": time.perf_counter() - t0}
    result = ApplyResult(
        ms_path=ms,
        method="applycal",
        data_column="CORRECTED_DATA",
        tables=ordered,
        set_name=set_name,
        obs_time=obs.mid,
        dec_deg=obs.pointing_dec_deg,
        timings_s=timings,
    )
    write_provenance(ms, _record(result))
    logger.info("applied %s to %s (applycal, %.1f s)", set_name or "tables", ms, timings["total"])
    return result


def convert_calibrated(
    files: Sequence[Path],
    out_ms: Path,
    tables_: Sequence[Path],
    base: Any = None,
    *,
    set_name: str | None = None,
) -> ApplyResult:
    """Convert a group with the tables applied on the fly (DATA is calibrated).

    Args:
        files: The group's subband files.
        out_ms: The MS to write.
        tables_: Tables to apply (any order; bandpass then gains are applied).
        base: :class:`~dsa_stream.conversion.ConvertOptions` to start from (default
            options otherwise); ``apply_tables`` is replaced.
        set_name: Name of the applied set (provenance).
    """
    from dsa_stream.conversion import ConvertOptions, convert_group

    opts = base if base is not None else ConvertOptions()
    ordered = order_and_check(tables_, None)
    t0 = time.perf_counter()
    conv = convert_group(list(files), out_ms, opts.model_copy(update={"apply_tables": ordered}))
    obs = observation_from_ms(conv.ms_path)
    result = ApplyResult(
        ms_path=conv.ms_path,
        method="on-the-fly",
        data_column="DATA",
        tables=ordered,
        set_name=set_name,
        obs_time=obs.mid,
        dec_deg=obs.pointing_dec_deg,
        timings_s={"convert": time.perf_counter() - t0},
    )
    write_provenance(conv.ms_path, _record(result))
    return result
