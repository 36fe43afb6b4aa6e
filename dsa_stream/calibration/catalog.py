"""The bundled calibrator catalogue: positions and flux-density models.

The catalogue is ``dsa_stream/data/calibrators.yaml`` (package data); that file says
where every number comes from. Two flux models exist:

* :class:`PerleyButlerFlux` - the Perley & Butler (2017) polynomial
  ``log10(S/Jy) = sum_k a_k (log10(nu/GHz))**k``, used for the flux-scale sources
  (3C48, 3C138, 3C147, 3C196, 3C286, 3C295, 3C380);
* :class:`PowerLawFlux` - ``S = S_ref (nu / nu_ref)**alpha``, used for the other VLA
  calibrators and for simulated sources.

Names are matched case-insensitively, ignoring spaces and underscores, against each
calibrator's name and aliases (3C/J2000/B1950 names).
"""

from __future__ import annotations

import difflib
import functools
import logging
import math
import re
from importlib import resources
from typing import Annotated, Literal

import numpy as np
import yaml
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field

from dsa_stream.exceptions import CalibrationError

logger = logging.getLogger(__name__)

#: Reference frequency of power-law fluxes in the catalogue and the simulator (Hz).
REF_FREQ_HZ = 1.4e9

_RA_RE = re.compile(r"^\s*(\d{1,2})h(\d{1,2})m(\d{1,2}(?:\.\d*)?)s\s*$")
_DEC_RE = re.compile(r"^\s*([+-]?)(\d{1,2})d(\d{1,2})'(\d{1,2}(?:\.\d*)?)\"\s*$")


class PowerLawFlux(BaseModel):
    """Power-law spectrum ``S(nu) = flux_jy * (nu / ref_freq_hz) ** spectral_index``."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    model: Literal["power_law"] = "power_law"
    flux_jy: float
    """Flux density at ``ref_freq_hz`` (Jy)."""
    ref_freq_hz: float = REF_FREQ_HZ
    """Reference frequency (Hz)."""
    spectral_index: float = 0.0
    """Spectral index alpha, with S proportional to nu**alpha."""

    def flux_jy_at(self, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """Flux density (Jy) at the given frequencies (Hz), vectorised."""
        freq = np.asarray(freq_hz, dtype=np.float64)
        return np.asarray(self.flux_jy * (freq / self.ref_freq_hz) ** self.spectral_index)


class PerleyButlerFlux(BaseModel):
    """Perley & Butler (2017) model ``log10(S/Jy) = sum_k coeffs[k] * log10(nu/GHz)**k``."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    model: Literal["perley_butler_2017"] = "perley_butler_2017"
    coeffs: tuple[float, ...] = Field(min_length=1)
    """Polynomial coefficients a_0, a_1, ... (frequency in GHz, flux density in Jy)."""

    def flux_jy_at(self, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """Flux density (Jy) at the given frequencies (Hz), vectorised."""
        x = np.log10(np.asarray(freq_hz, dtype=np.float64) / 1e9)
        log_s = np.zeros_like(x)
        for k, a in enumerate(self.coeffs):
            log_s = log_s + a * x**k
        return np.asarray(10.0**log_s)


#: Any flux model, discriminated by its ``model`` field.
FluxModel = Annotated[PowerLawFlux | PerleyButlerFlux, Field(discriminator="model")]


class Calibrator(BaseModel):
    """One catalogue source: name, aliases, ICRS position and flux model."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str
    """Primary name (3C name where there is one, else the J2000 name)."""
    aliases: tuple[str, ...] = ()
    """Other names: J2000, B1950 and common names."""
    ra_deg: float
    """ICRS right ascension (deg)."""
    dec_deg: float
    """ICRS declination (deg)."""
    flux: FluxModel
    """Flux-density model."""
    position_source: str = ""
    """Key of the reference the position comes from (see the YAML header)."""

    def flux_jy(self, freq_hz: ArrayLike) -> NDArray[np.float64]:
        """Flux density (Jy) at the given frequencies (Hz), vectorised."""
        return self.flux.flux_jy_at(freq_hz)

    def all_names(self) -> tuple[str, ...]:
        """The primary name followed by the aliases."""
        return (self.name, *self.aliases)


def parse_ra(text: str) -> float:
    """Parse ``"HHhMMmSS.sss s"`` into degrees."""
    m = _RA_RE.match(text)
    if m is None:
        raise CalibrationError(f"not a right ascension of the form 00h00m00.0s: {text!r}")
    h, mi, s = int(m[1]), int(m[2]), float(m[3])
    if h >= 24 or mi >= 60 or s >= 60:
        raise CalibrationError(f"right ascension out of range: {text!r}")
    return 15.0 * (h + mi / 60.0 + s / 3600.0)


def parse_dec(text: str) -> float:
    """Parse a declination ``+DDdMM'SS.sss"`` (with a double quote for seconds) into degrees."""
    m = _DEC_RE.match(text)
    if m is None:
        raise CalibrationError(f"not a declination of the form +00d00'00.0\": {text!r}")
    d, mi, s = int(m[2]), int(m[3]), float(m[4])
    if d > 90 or mi >= 60 or s >= 60:
        raise CalibrationError(f"declination out of range: {text!r}")
    value = d + mi / 60.0 + s / 3600.0
    return -value if m[1] == "-" else value


def normalize_name(name: str) -> str:
    """Key used for name matching: upper case, without spaces and underscores."""
    return re.sub(r"[\s_]+", "", name).upper()


def _calibrator_from_entry(entry: dict[str, object]) -> Calibrator:
    data = dict(entry)
    data["ra_deg"] = parse_ra(str(data.pop("ra")))
    data["dec_deg"] = parse_dec(str(data.pop("dec")))
    aliases = data.get("aliases") or ()
    if not isinstance(aliases, list | tuple):
        raise ValueError(f"aliases of {data.get('name')!r} must be a list")
    data["aliases"] = tuple(str(a) for a in aliases)
    return Calibrator.model_validate(data)


@functools.cache
def load_catalog() -> tuple[Calibrator, ...]:
    """All calibrators of the bundled catalogue, in file order.

    Raises:
        CalibrationError: if the package data is missing or malformed, or two
            entries share a name.
    """
    try:
        text = resources.files("dsa_stream").joinpath("data", "calibrators.yaml").read_text()
        doc = yaml.safe_load(text)
        cals = tuple(_calibrator_from_entry(e) for e in doc["calibrators"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise CalibrationError(f"cannot read the bundled calibrator catalogue: {exc}") from exc
    seen: dict[str, str] = {}
    for cal in cals:
        for alias in cal.all_names():
            key = normalize_name(alias)
            if key in seen and seen[key] != cal.name:
                raise CalibrationError(
                    f"calibrator name {alias!r} used by {seen[key]} and {cal.name}"
                )
            seen[key] = cal.name
    logger.debug("loaded %d calibrators", len(cals))
    return cals


@functools.cache
def _name_index() -> dict[str, Calibrator]:
    return {normalize_name(n): cal for cal in load_catalog() for n in cal.all_names()}


def get_calibrator(name: str) -> Calibrator:
    """Look a calibrator up by name or alias (case-insensitive, spaces ignored).

    Raises:
        CalibrationError: for an unknown name; the message lists close names.
    """
    index = _name_index()
    cal = index.get(normalize_name(name))
    if cal is not None:
        return cal
    known = sorted({n for c in load_catalog() for n in c.all_names()})
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(name.upper(), [k.upper() for k in known], n=5, cutoff=0.4)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise CalibrationError(
        f"unknown calibrator {name!r}{hint} (the catalogue has {len(load_catalog())} sources: "
        f"{', '.join(c.name for c in load_catalog())})"
    )


def angular_separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance between two positions (all in degrees), by the haversine formula."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dra = math.radians(ra2 - ra1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dra / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))
