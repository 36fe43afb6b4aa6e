"""Read the sources QA should find from a catalogue file (CSV or a JSON list).

CSV: a header line with at least ``ra_deg,dec_deg,flux_jy``; optional ``name``,
``ref_freq_hz`` (default 1.4 GHz) and ``spectral_index`` (default 0). JSON: a list of
objects with the fields of :class:`~dsa_stream.imaging.options.ExpectedSource`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import ValidationError

from dsa_stream.exceptions import ImagingError
from dsa_stream.imaging.options import ExpectedSource

_REQUIRED = ("ra_deg", "dec_deg", "flux_jy")


def load_expected_csv(path: Path) -> list[ExpectedSource]:
    """Expected sources from a CSV catalogue.

    Raises:
        ImagingError: unreadable file, missing columns or invalid values.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    except OSError as exc:
        raise ImagingError(f"cannot read expected sources {path}: {exc}") from exc
    if rows and any(col not in rows[0] for col in _REQUIRED):
        raise ImagingError(f"{path}: the header must name the columns {', '.join(_REQUIRED)}")
    out = []
    for k, row in enumerate(rows, start=1):
        doc: dict[str, object] = {key: row[key] for key in _REQUIRED}
        doc["name"] = row.get("name") or f"src{k}"
        for opt in ("ref_freq_hz", "spectral_index"):
            if row.get(opt):
                doc[opt] = row[opt]
        doc["ra_deg"] = float(str(doc["ra_deg"])) % 360.0
        try:
            out.append(ExpectedSource.model_validate(doc))
        except (ValidationError, ValueError) as exc:
            raise ImagingError(f"{path}, row {k}: {exc}") from exc
    return out


def load_expected_json(path: Path) -> list[ExpectedSource]:
    """Expected sources from a JSON list of :class:`ExpectedSource` objects."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImagingError(f"cannot read expected sources {path}: {exc}") from exc
    if not isinstance(doc, list):
        raise ImagingError(f"{path}: expected a JSON list of sources")
    try:
        return [ExpectedSource.model_validate(item) for item in doc]
    except ValidationError as exc:
        raise ImagingError(f"{path}: {exc}") from exc
