"""Simulated fields for the imaging tests (session scope: simulated, calibrated, imaged once).

One simulated night of two groups, 32 antennas (4 outriggers), 4 channels per subband,
the simulator's default gains, bandpasses (3 ns delays, ripples, roll-off) and thermal
noise, pointing at the Dec of 3C48:

* group 1: 3C48 transits in its middle: the calibrator group, solved by the calibration
  stage (:func:`dsa_stream.calibration.solve.solve_group`: conversion at 3C48, model,
  flagging, the CASA bandpass + gain chain);
* group 0, 98 min earlier, observed when the meridian is at ICRS RA 359.85 so that the
  field straddles RA 0/360 (WSClean writes CRVAL1 = -0.15 for it): converted (midpoint)
  and calibrated with that set by applycal, as the calibration stage does
  (:func:`dsa_stream.calibration.apply.apply_to_ms`; CORRECTED_DATA plus the stage's
  record in the MS). Seven explicit sources sit at drift-averaged primary-beam
  responses 0.9 ... 0.3, two of the faint ones close to the RA axis (where the drift
  changes the beam most: their response changes by a factor 3 during the group), with
  spectral indices 0 ... -0.9.

Imaging: core baselines only (uv <= 2000 lambda: beam ~170" x 53"), 1536 x 10" (4.27 deg,
5.3 px across the beam's minor axis), Briggs 0, auto-mask 3 sigma - the same options for
both backends.

Source layout: the core-only PSF has far sidelobes of 2-4 % (rms) along the E-W axis
out to 1.2 deg and ~1 % along N-S, and a source's sidelobes are not subtracted exactly
from its neighbours (the drift makes each source's response differ slightly from the
PSF). With the seven sources at the position angles of :data:`FIELD_SOURCES` (picked
to keep every pair off those axes, at least 0.68 deg apart) the rms sidelobe level
each source receives from the others is <= 1.6 % of its flux; the first layout tried
(2.5-4.2 %) left up to 4 % flux errors after cleaning in either imager, an isolated
source of the same field comes out within 1 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from scipy.optimize import brentq

import dsa_stream.casa_env  # noqa: F401  (astropy/CASA offline first)
from dsa_stream.beam import airy_power
from dsa_stream.conversion import ConvertOptions, ValidationOptions, convert_group
from dsa_stream.imaging.options import ExpectedSource, ImagingOptions, ImagingResult
from dsa_stream.simulate import (
    PointSourceSpec,
    SimulationOptions,
    SimulationTruth,
    SkyOptions,
    load_truth,
    plan_night,
    simulate_night,
)

FAST_CHECKS = ValidationOptions(casatools="off", casacore35="off")
CALIBRATOR = "3C48"
#: Minutes between the target group's end and the calibrator group's start: puts the
#: target group's meridian at ICRS RA 359.85 deg.
GAP_MINUTES = 93.0

#: (nominal single-pointing beam response, position angle deg, flux at 1.4 GHz Jy, alpha);
#: the position angles keep the pairs off the PSF's sidelobe axes (module docstring).
FIELD_SOURCES = (
    (0.9, 175.0, 0.2, -0.7),
    (0.8, 290.0, 0.3, -0.8),
    (0.65, 100.0, 0.4, -0.5),
    (0.5, 70.0, 0.3, -0.9),
    (0.45, 25.0, 0.5, -0.6),
    (0.35, 210.0, 0.6, -0.7),
    (0.3, 290.0, 0.6, 0.0),
)

#: The options both backends image the test field with.
TEST_OPTIONS = ImagingOptions(
    size_px=1536,
    cell_arcsec=10.0,
    robust=0.0,
    uv_max_lambda=2000.0,
    auto_mask_sigma=3.0,
    timeout_s=900.0,
)


def offset_for_response(response: float, freq_hz: float = 1.405e9) -> float:
    """Distance (deg) from the pointing at which the Airy beam has ``response``."""
    return math.degrees(brentq(lambda t: float(airy_power(t, freq_hz)) - response, 1e-6, 0.05))


@dataclass(frozen=True)
class Field:
    """A simulated target group, converted and calibrated."""

    ms: Path
    truth: SimulationTruth
    expected: tuple[ExpectedSource, ...]
    caltables: tuple[Path, ...]
    """The applied tables (bandpass, gain)."""
    calibrator_group: int
    """Index of the calibrator group in ``truth.groups``."""
    columns: frozenset[str]
    """The MS's main-table columns before any imaging."""


def expected_sources(truth: SimulationTruth, names: set[str]) -> tuple[ExpectedSource, ...]:
    """The named sources of the truth as ExpectedSources (power law through the band)."""
    out = []
    for src in truth.sources:
        if src.name not in names:
            continue
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


def _field_specs(base: dict[str, object]) -> tuple[PointSourceSpec, ...]:
    """The explicit sources around the target group's mid pointing."""
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
    return tuple(specs)


def simulate_field(out: Path, *, antennas: int = 32) -> Field:
    """Simulate the night, solve on the calibrator group, convert + applycal the target."""
    from casacore import tables

    from dsa_stream.calibration.apply import apply_to_ms
    from dsa_stream.calibration.options import SolveOptions
    from dsa_stream.calibration.solve import solve_group

    base: dict[str, object] = dict(
        out_dir=out / "raw",
        n_groups=2,
        antennas=antennas,
        channels_per_subband=4,
        seed=5,
        calibrator=CALIBRATOR,
        calibrator_group=1,
        gap_minutes=GAP_MINUTES,
    )
    specs = _field_specs(base)
    sky = SkyOptions(density_per_deg2=0.0, extra_sources=specs)
    result = simulate_night(SimulationOptions(**base, sky=sky))  # type: ignore[arg-type]
    truth = load_truth(result.truth_path)
    raw = out / "raw"
    solved = solve_group(
        [raw / f for f in truth.groups[1].files], out / "caltables", SolveOptions(plots=False)
    )
    if not solved.passed:
        raise RuntimeError(f"calibration QA failed: {solved.qa.problems}")
    caltables = (solved.table("bandpass").path, solved.table("gain").path)
    opts = ConvertOptions(checksum_inputs=False, validation=FAST_CHECKS)
    ms = convert_group([raw / f for f in truth.groups[0].files], out / "field.ms", opts).ms_path
    apply_to_ms(ms, caltables, set_name=solved.set_name)
    with tables.table(str(ms), ack=False) as tb:
        columns = frozenset(tb.colnames())
    return Field(
        ms=ms,
        truth=truth,
        expected=expected_sources(truth, {s.name for s in specs}),
        caltables=caltables,
        calibrator_group=1,
        columns=columns,
    )


@pytest.fixture(scope="session")
def field(tmp_path_factory: pytest.TempPathFactory) -> Field:
    """The calibrated target group (module docstring); do not modify its MS."""
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
