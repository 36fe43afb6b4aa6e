"""What the imaging stage reads from a Measurement Set (python-casacore, parent process only).

* the phase centre(s) (FIELD), the band (SPECTRAL_WINDOW), the observation span;
* the per-integration pointing centres of the drift: the ``DSA_MERIDIAN_CENTRES``
  subtable written by the converter (else POINTING, else the phase centre, with a
  warning);
* provenance: the converter's manifest (group, calibration tables applied on the fly
  with their solution times) and the HISTORY table.

This module imports python-casacore; never import it in a process that uses casatools.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from casacore import tables
from numpy.typing import NDArray

from dsa_stream import naming
from dsa_stream.exceptions import ImagingError
from dsa_stream.imaging.options import CalibrationRecord

logger = logging.getLogger(__name__)

#: The converter's manifest inside the MS (``dsa_stream.conversion.staging.MANIFEST_NAME``).
MS_MANIFEST_NAME = "DSA_STREAM_MANIFEST.json"
#: The calibration stage's record inside the MS (``naming.MS_CALIBRATION_RECORD``).
MS_CALIBRATION_RECORD = naming.MS_CALIBRATION_RECORD
#: The converter's subtable of meridian centres (``dsa_stream.conversion.msio.CENTRES_TABLE``).
CENTRES_TABLE = "DSA_MERIDIAN_CENTRES"
_HISTORY_CAL = re.compile(r"Calibration applied on the fly: (.*)\.$")
_HISTORY_TABLE = re.compile(r"^(?P<path>.+?) \((?P<type>[^()]*)\)$")


@dataclass(frozen=True)
class MsInfo:
    """The facts about one MS that imaging needs."""

    path: Path
    n_fields: int
    phase_centre_deg: tuple[float, float]
    """ICRS (RA in [0, 360), Dec) of field 0 (deg)."""
    freqs_hz: NDArray[np.float64]
    """Channel centres of the (single) spectral window, ascending (Hz)."""
    chan_width_hz: float
    times_mjd: NDArray[np.float64]
    """Integration centres (MJD, UTC), ascending."""
    integration_s: float
    pointing_deg: NDArray[np.float64]
    """(n_times, 2) ICRS (RA, Dec) the dishes pointed at, one row per integration (deg)."""
    pointing_source: str
    """``DSA_MERIDIAN_CENTRES``, ``POINTING`` or ``FIELD``."""
    telescope: str
    columns: tuple[str, ...]
    manifest: dict[str, Any] | None
    calibration_record: dict[str, Any] | None
    history: tuple[str, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def time_start_mjd(self) -> float:
        """Start of the first integration (MJD)."""
        return float(self.times_mjd[0] - self.integration_s / 2 / 86400.0)

    @property
    def time_end_mjd(self) -> float:
        """End of the last integration (MJD)."""
        return float(self.times_mjd[-1] + self.integration_s / 2 / 86400.0)

    def group_key(self) -> str:
        """Group key of the observation (its start from the data, to the second)."""
        result = (self.manifest or {}).get("result") or {}
        start = result.get("time_start_mjd", self.time_start_mjd)
        return naming.group_key(mjd_to_datetime(float(start)))

    def pointing_mid_deg(self) -> tuple[float, float]:
        """The pointing of the middle integration (deg)."""
        ra, dec = self.pointing_deg[len(self.pointing_deg) // 2]
        return float(ra) % 360.0, float(dec)


def mjd_to_datetime(mjd: float) -> datetime:
    """An aware UTC datetime for an MJD (UTC)."""
    return datetime(1858, 11, 17, tzinfo=UTC) + timedelta(days=mjd)


def _open(path: Path) -> tables.table:
    try:
        return tables.table(str(path), ack=False, readonly=True)
    except RuntimeError as exc:
        raise ImagingError(f"cannot open Measurement Set {path}: {exc}") from exc


def _band(path: Path) -> tuple[NDArray[np.float64], float]:
    with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as spw:
        if spw.nrows() != 1:
            raise ImagingError(f"{path}: {spw.nrows()} spectral windows; expected one")
        freqs = np.asarray(spw.getcell("CHAN_FREQ", 0), dtype=np.float64)
        width = float(np.abs(spw.getcell("CHAN_WIDTH", 0)).mean())
    return np.sort(freqs), width


def _fields(path: Path) -> tuple[int, tuple[float, float]]:
    with tables.table(f"{path}/FIELD", ack=False) as tb:
        n = tb.nrows()
        if n == 0:
            raise ImagingError(f"{path}: empty FIELD table")
        direction = np.asarray(tb.getcell("PHASE_DIR", 0)).reshape(-1, 2)[0]
    ra, dec = (math.degrees(float(x)) for x in direction)
    return n, (ra % 360.0, dec)


def _centres(path: Path, times_mjd: NDArray[np.float64]) -> tuple[NDArray[np.float64], str]:
    """Per-integration pointing centres and where they came from (None if unavailable)."""
    sub = path / CENTRES_TABLE
    if sub.is_dir():
        with tables.table(str(sub), ack=False) as tb:
            t = np.asarray(tb.getcol("TIME")) / 86400.0
            radec = np.degrees(np.stack([tb.getcol("RA_ICRS"), tb.getcol("DEC_ICRS")], axis=1))
        return _nearest(t, radec, times_mjd), CENTRES_TABLE
    pointing = path / "POINTING"
    if pointing.is_dir():
        with tables.table(str(pointing), ack=False) as tb:
            if tb.nrows() > 0:
                t = np.asarray(tb.getcol("TIME")) / 86400.0
                d = np.asarray(tb.getcol("DIRECTION")).reshape(tb.nrows(), -1, 2)[:, 0, :]
                return _nearest(t, np.degrees(d), times_mjd), "POINTING"
    return np.empty((0, 2)), "FIELD"


def _nearest(
    t: NDArray[np.float64], radec: NDArray[np.float64], times: NDArray[np.float64]
) -> NDArray[np.float64]:
    order = np.argsort(t)
    t, radec = t[order], radec[order]
    idx = np.clip(np.searchsorted(t, times), 1, max(1, t.size - 1))
    left = np.clip(idx - 1, 0, t.size - 1)
    right = np.clip(idx, 0, t.size - 1)
    pick = np.where(np.abs(t[left] - times) <= np.abs(t[right] - times), left, right)
    return np.asarray(radec[pick], dtype=np.float64)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The converter's manifest of an MS, or None."""
    return _read_json(path / MS_MANIFEST_NAME)


def _history(path: Path) -> tuple[str, ...]:
    hist = path / "HISTORY"
    if not hist.is_dir():
        return ()
    with tables.table(str(hist), ack=False) as tb:
        if tb.nrows() == 0 or "MESSAGE" not in tb.colnames():
            return ()
        return tuple(str(m) for m in tb.getcol("MESSAGE"))


def read_ms_info(path: Path) -> MsInfo:
    """Read what imaging needs from ``path``.

    Raises:
        ImagingError: the MS is missing, unreadable, or not a single-window MS.
    """
    path = Path(path)
    if not path.is_dir():
        raise ImagingError(f"Measurement Set not found: {path}")
    warnings: list[str] = []
    with _open(path) as ms:
        if ms.nrows() == 0:
            raise ImagingError(f"{path}: the main table is empty")
        columns = tuple(ms.colnames())
        times_s = np.unique(np.asarray(ms.getcol("TIME")))
        interval = float(np.median(ms.getcol("INTERVAL", nrow=min(ms.nrows(), 10000))))
    with tables.table(f"{path}/OBSERVATION", ack=False) as obs:
        telescope = str(obs.getcell("TELESCOPE_NAME", 0)) if obs.nrows() else ""
    freqs, width = _band(path)
    n_fields, centre = _fields(path)
    times = times_s / 86400.0
    pointing, source = _centres(path, times)
    if source == "FIELD":
        warnings.append(
            "no DSA_MERIDIAN_CENTRES or POINTING table: the primary beam assumes the dishes "
            "pointed at the phase centre throughout"
        )
        pointing = np.tile(np.array(centre), (times.size, 1))
    return MsInfo(
        path=path,
        n_fields=n_fields,
        phase_centre_deg=centre,
        freqs_hz=freqs,
        chan_width_hz=width,
        times_mjd=times,
        integration_s=interval,
        pointing_deg=pointing,
        pointing_source=source,
        telescope=telescope,
        columns=columns,
        manifest=read_manifest(path),
        calibration_record=_read_json(path / MS_CALIBRATION_RECORD),
        history=_history(path),
        warnings=tuple(warnings),
    )


def _from_manifest(manifest: dict[str, Any]) -> list[CalibrationRecord]:
    out = []
    for entry in (manifest.get("result") or {}).get("applied_tables") or []:
        times = [float(t) for t in entry.get("solution_times_mjd") or []]
        out.append(
            CalibrationRecord(
                path=str(entry.get("path", "")),
                type=str(entry.get("type", "")),
                obs_start_mjd=min(times) if times else None,
                obs_end_mjd=max(times) if times else None,
                source="ms-manifest",
            )
        )
    return out


def _from_history(history: tuple[str, ...]) -> list[CalibrationRecord]:
    out = []
    for line in history:
        for text in line.splitlines():
            m = _HISTORY_CAL.search(text.strip())
            if m is None or m.group(1).strip() == "none":
                continue
            for item in m.group(1).split("; "):
                t = _HISTORY_TABLE.match(item.strip())
                path, kind = (t["path"], t["type"]) if t else (item.strip(), "")
                out.append(CalibrationRecord(path=path, type=kind, source="ms-history"))
    return out


def caltable_times(path: Path) -> tuple[float | None, float | None]:
    """First and last solution time (MJD) of a CASA calibration table, or (None, None)."""
    try:
        with tables.table(str(path), ack=False) as tb:
            if tb.nrows() == 0 or "TIME" not in tb.colnames():
                return None, None
            t = np.asarray(tb.getcol("TIME")) / 86400.0
    except RuntimeError:
        return None, None
    return float(t.min()), float(t.max())


def _from_record(record: dict[str, Any]) -> list[CalibrationRecord]:
    out = []
    for path in record.get("tables") or []:
        start, end = caltable_times(Path(str(path)))
        out.append(
            CalibrationRecord(
                path=str(path),
                type=caltable_type(Path(str(path))),
                obs_start_mjd=start,
                obs_end_mjd=end,
                set_name=record.get("set_name"),
                source="ms-calibration-record",
            )
        )
    return out


def caltable_type(path: Path) -> str:
    """The CASA VisCal type of a table (``B Jones``), or '' when unreadable."""
    try:
        with tables.table(str(path), ack=False) as tb:
            return str(tb.getkeywords().get("VisCal", ""))
    except RuntimeError:
        return ""


def calibration_records(
    info: MsInfo, given: tuple[CalibrationRecord, ...] = ()
) -> tuple[CalibrationRecord, ...]:
    """Calibration tables applied to the imaged data, with the times they were solved on.

    Sources, first match per table path wins: ``given`` records; the calibration
    stage's record in the MS; the converter's manifest (tables applied on the fly, with
    solution times); the MS HISTORY. Tables without times get them from the table
    itself when it is readable.
    """
    records: list[CalibrationRecord] = []
    for rec in given:
        if rec.obs_start_mjd is None and Path(rec.path).is_dir():
            start, end = caltable_times(Path(rec.path))
            rec = rec.model_copy(update={"obs_start_mjd": start, "obs_end_mjd": end})
        records.append(rec)
    found = _from_record(info.calibration_record) if info.calibration_record else []
    if info.manifest:
        found += _from_manifest(info.manifest)
    if not found:
        found = _from_history(info.history)
    seen = {str(Path(r.path).resolve()) for r in records}
    for rec in found:
        key = str(Path(rec.path).resolve())
        if key not in seen:
            seen.add(key)
            if rec.obs_start_mjd is None and Path(rec.path).is_dir():
                start, end = caltable_times(Path(rec.path))
                rec = rec.model_copy(update={"obs_start_mjd": start, "obs_end_mjd": end})
            records.append(rec)
    return tuple(records)


def resolve_data_column(info: MsInfo, requested: str) -> str:
    """The MS column to image for ``requested`` (``auto``, ``DATA``, ``CORRECTED_DATA``).

    Raises:
        ImagingError: the column does not exist.
    """
    column = requested
    if requested == "auto":
        record_col = (info.calibration_record or {}).get("data_column")
        if record_col in ("DATA", "CORRECTED_DATA"):
            column = str(record_col)
        else:
            column = "CORRECTED_DATA" if "CORRECTED_DATA" in info.columns else "DATA"
    if column not in info.columns:
        raise ImagingError(f"{info.path} has no {column} column")
    return column
