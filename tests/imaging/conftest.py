"""Simulated fields for the imaging tests (session scope: simulated, converted, imaged once).

The main field: 32 antennas (4 outriggers), 4 channels per subband, thermal noise, no
gains or bandpasses (the "calibrated" truth), pointing Dec 40, observed when the
meridian is at RA ~0 so that the field straddles RA 0/360 (WSClean writes CRVAL1 =
-0.24 for it). Seven explicit sources sit at drift-averaged primary-beam responses
0.9 ... 0.3 in every direction (also along RA, where the drift changes the beam most),
with spectral indices 0 ... -0.9.

Imaging: core baselines only (uv <= 2000 lambda: beam ~170" x 53"), 1536 x 10" (4.27 deg,
5.3 px across the beam's minor axis), Briggs 0, auto-mask 3 sigma, Clark minor cycles
for tclean - the same options for both backends.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time
from scipy.optimize import brentq

import dsa_stream.casa_env  # noqa: F401  (astropy/CASA offline first)
from dsa_stream import instrument
from dsa_stream.beam import airy_power
from dsa_stream.conversion import ConvertOptions, ValidationOptions, convert_group
from dsa_stream.imaging.options import ExpectedSource, ImagingOptions, ImagingResult
from dsa_stream.simulate import (
    CorruptionOptions,
    PointSourceSpec,
    SimulationOptions,
    SimulationTruth,
    SkyOptions,
    load_truth,
    plan_night,
    simulate_night,
)

FAST_CHECKS = ValidationOptions(casatools="off", casacore35="off")

#: (nominal single-pointing beam response, position angle deg, flux at 1.4 GHz Jy, alpha)
FIELD_SOURCES = (
    (0.9, 30.0, 0.2, -0.7),
    (0.8, 100.0, 0.3, -0.8),
    (0.65, 200.0, 0.4, -0.5),
    (0.5, 290.0, 0.3, -0.9),
    (0.45, 60.0, 0.5, -0.6),
    (0.35, 160.0, 0.6, -0.7),
    (0.3, 250.0, 0.6, 0.0),
)

#: The options both backends image the test field with.
TEST_OPTIONS = ImagingOptions(
    size_px=1536,
    cell_arcsec=10.0,
    robust=0.0,
    uv_max_lambda=2000.0,
    auto_mask_sigma=3.0,
    tclean_deconvolver="clark",
    timeout_s=900.0,
)


def start_for_lst(lst_deg: float, date: str = "2025-10-02") -> dt.datetime:
    """An observation start whose middle has apparent LST ``lst_deg`` at the site."""
    t0 = Time(f"{date}T00:00:00", scale="utc")
    l0 = t0.sidereal_time("apparent", longitude=instrument.SITE_LON_DEG * u.deg).deg
    hours = ((lst_deg - l0) % 360.0) / 15.0 / 1.00273790935
    t = t0 + hours * u.hour - (instrument.OBSERVATION_S / 2) * u.s
    return t.to_datetime(timezone=dt.UTC).replace(microsecond=0)


def offset_for_response(response: float, freq_hz: float = 1.405e9) -> float:
    """Distance (deg) from the pointing at which the Airy beam has ``response``."""
    return math.degrees(brentq(lambda t: float(airy_power(t, freq_hz)) - response, 1e-6, 0.05))


@dataclass(frozen=True)
class Field:
    """A simulated, converted field."""

    ms: Path
    truth: SimulationTruth
    expected: tuple[ExpectedSource, ...]


def expected_sources(truth: SimulationTruth) -> tuple[ExpectedSource, ...]:
    """Every source of the truth as an ExpectedSource (power law through the band)."""
    out = []
    for src in truth.sources:
        lo, hi = (float(src.flux_jy(f)) for f in (1.31e9, 1.50e9))
        out.append(
            ExpectedSource(
                name=src.name,
                ra_deg=src.ra_deg % 360.0,
                dec_deg=src.dec_deg,
                flux_jy=float(src.flux_jy(1.4e9)),
                spectral_index=math.log(hi / lo) / math.log(1.50 / 1.31),
            )
        )
    return tuple(out)


def simulate_field(
    out: Path, *, antennas: int = 32, lst_deg: float = 0.1, dec_deg: float = 40.0
) -> Field:
    """Simulate and convert the test field (module docstring)."""
    base = dict(
        out_dir=out / "raw",
        n_groups=1,
        antennas=antennas,
        channels_per_subband=4,
        seed=5,
        dec_deg=dec_deg,
        start=start_for_lst(lst_deg),
        corruption=CorruptionOptions(gains=False, bandpass=False, noise=True),
    )
    plan = plan_night(SimulationOptions(**base, sky=SkyOptions(density_per_deg2=0.0)))
    ra0, dec0 = (math.degrees(x) for x in plan.groups[0].mid_icrs_rad)
    centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
    specs = []
    for k, (resp, pa, flux, alpha) in enumerate(FIELD_SOURCES):
        pos = centre.directional_offset_by(pa * u.deg, offset_for_response(resp) * u.deg)
        specs.append(
            PointSourceSpec(
                name=f"s{k}_pb{resp}",
                ra_deg=float(pos.ra.wrap_at(360 * u.deg).deg) % 360.0,
                dec_deg=float(pos.dec.deg),
                flux_jy=flux,
                spectral_index=alpha,
            )
        )
    sky = SkyOptions(density_per_deg2=0.0, extra_sources=tuple(specs))
    result = simulate_night(SimulationOptions(**base, sky=sky))
    files = sorted((out / "raw").glob("*_sb*.hdf5"))
    opts = ConvertOptions(checksum_inputs=False, validation=FAST_CHECKS)
    ms = convert_group(files, out / "field.ms", opts).ms_path
    truth = load_truth(result.truth_path)
    return Field(ms=ms, truth=truth, expected=expected_sources(truth))


@pytest.fixture(scope="session")
def field(tmp_path_factory: pytest.TempPathFactory) -> Field:
    """The main test field (module docstring); do not modify its MS."""
    return simulate_field(tmp_path_factory.mktemp("field"))


def _image(field: Field, out: Path, backend: str) -> ImagingResult:
    from dsa_stream.imaging import image_ms

    opts = TEST_OPTIONS.model_copy(update={"backend": backend})
    return image_ms(field.ms, out / "field", opts, expected=field.expected, config_hash="test")


@pytest.fixture(scope="session")
def wsclean_result(field: Field, tmp_path_factory: pytest.TempPathFactory) -> ImagingResult:
    """The field imaged by WSClean."""
    return _image(field, tmp_path_factory.mktemp("ws"), "wsclean")


@pytest.fixture(scope="session")
def tclean_result(field: Field, tmp_path_factory: pytest.TempPathFactory) -> ImagingResult:
    """The field imaged by tclean (child process)."""
    return _image(field, tmp_path_factory.mktemp("tc"), "tclean")
