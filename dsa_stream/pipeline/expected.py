"""The sources image and mosaic QA compare against (``products.catalog``).

A catalogue is a simulator ``truth.json`` (the sky the simulation injected), a CSV or
a JSON list (:mod:`dsa_stream.imaging.expected`). Spectra become a power law through
the band edges, anchored at 1.4 GHz. For one group's image only the sources its
primary beam sees are expected (a truth file knows the response per group; for a
catalogue every source is passed and QA keeps those above its S/N limit).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from dsa_stream.exceptions import ConfigError

#: Truth sources whose peak primary-beam response during a group reaches this are
#: expected in the group's image.
MIN_RESPONSE = 0.05
#: Band edges (Hz) through which a truth spectrum is turned into a power law.
BAND_EDGES_HZ = (1.31e9, 1.50e9)
#: Reference frequency (Hz) of catalogue fluxes.
REF_FREQ_HZ = 1.4e9
TRUTH_FORMAT = "dsa-stream-simulation-truth"


class CatalogSource(BaseModel):
    """A source of the catalogue: position, flux at 1.4 GHz and spectral index."""

    model_config = ConfigDict(frozen=True)

    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    spectral_index: float = 0.0

    def flux_at(self, freq_hz: float) -> float:
        """Flux (Jy) at ``freq_hz``."""
        return self.flux_jy * (freq_hz / REF_FREQ_HZ) ** self.spectral_index


def _is_truth(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the QA catalogue {path}: {exc}") from exc
    return isinstance(doc, dict) and doc.get("format") == TRUTH_FORMAT


def _from_truth_source(src: Any) -> CatalogSource:
    lo, hi = (float(src.flux_jy(f)) for f in BAND_EDGES_HZ)
    ratio = BAND_EDGES_HZ[1] / BAND_EDGES_HZ[0]
    alpha = math.log(hi / lo) / math.log(ratio) if lo > 0 and hi > 0 else 0.0
    return CatalogSource(
        name=src.name,
        ra_deg=float(src.ra_deg) % 360.0,
        dec_deg=float(src.dec_deg),
        flux_jy=float(src.flux_jy(REF_FREQ_HZ)),
        spectral_index=alpha,
    )


@lru_cache(maxsize=8)
def _truth(path: Path, mtime_ns: int) -> Any:
    from dsa_stream.simulate import load_truth

    return load_truth(path)


def _load_truth(path: Path) -> Any:
    return _truth(path, path.stat().st_mtime_ns)


def catalog_sources(path: Path) -> list[CatalogSource]:
    """Every source of a catalogue file."""
    if not path.is_file():
        raise ConfigError(f"the QA catalogue {path} does not exist (products.catalog)")
    if _is_truth(path):
        return [_from_truth_source(s) for s in _load_truth(path).sources]
    from dsa_stream.imaging.expected import load_expected_csv, load_expected_json

    rows = load_expected_csv(path) if path.suffix.lower() == ".csv" else load_expected_json(path)
    return [
        CatalogSource(
            name=r.name,
            ra_deg=r.ra_deg,
            dec_deg=r.dec_deg,
            flux_jy=r.flux_at(REF_FREQ_HZ),
            spectral_index=r.spectral_index,
        )
        for r in rows
    ]


def for_image(path: Path | None, group_key: str) -> list[Any]:
    """Imaging :class:`~dsa_stream.imaging.options.ExpectedSource` list for one group."""
    if path is None:
        return []
    from dsa_stream.imaging.options import ExpectedSource

    if _is_truth(path):
        truth = _load_truth(path)
        if group_key in {g.key for g in truth.groups}:
            names = {s.name for s in truth.sources_in_field(group_key, min_response=MIN_RESPONSE)}
            sources = [_from_truth_source(truth.source(n)) for n in sorted(names)]
        else:
            sources = []
    else:
        sources = catalog_sources(path)
    return [
        ExpectedSource(
            name=s.name,
            ra_deg=s.ra_deg,
            dec_deg=s.dec_deg,
            flux_jy=s.flux_jy,
            ref_freq_hz=REF_FREQ_HZ,
            spectral_index=s.spectral_index,
        )
        for s in sources
    ]


def for_mosaic(path: Path | None, freq_hz: float) -> list[Any]:
    """Mosaic :class:`~dsa_stream.mosaic.options.ExpectedSource` list at ``freq_hz``."""
    if path is None:
        return []
    from dsa_stream.mosaic.options import ExpectedSource

    return [
        ExpectedSource(ra_deg=s.ra_deg, dec_deg=s.dec_deg, flux_jy=s.flux_at(freq_hz), name=s.name)
        for s in catalog_sources(path)
        if s.flux_at(freq_hz) > 0
    ]
