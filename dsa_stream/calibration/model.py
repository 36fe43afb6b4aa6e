"""The calibrator model the dishes see in a drift scan, written into MODEL_DATA.

The dishes point at the meridian (HA = 0, pointing Dec) while the calibrator drifts
through the primary beam, so its apparent flux changes during the group (about 7%
at the group edges for a source transiting at the centre). With the data phased to the
calibrator (one FIELD at its position), the model visibility of every baseline is real
and the same on all baselines:

    M(t, nu) = S(nu) * A(theta(t), nu)     for XX and YY (unpolarised: XX = YY = I)

with ``S`` the catalogue spectrum (Perley-Butler 2017 or power law), ``A`` the Airy
power beam of :mod:`dsa_stream.beam` and ``theta(t)`` the distance of the calibrator from
the meridian centre of integration ``t`` (the ``DSA_MERIDIAN_CENTRES`` of the MS).
Cross-hands (XY, YX) are zero. Other sources in the field are not modelled.

This module writes MODEL_DATA with python-casacore (parent process; never import it
into a process that has casatools loaded).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from dsa_stream.beam import airy_power
from dsa_stream.calibration.catalog import Calibrator
from dsa_stream.calibration.geometry import SECONDS_PER_DAY, separation_rad
from dsa_stream.calibration.observation import GroupObservation
from dsa_stream.exceptions import CalibrationError

logger = logging.getLogger(__name__)

#: Largest allowed distance of the MS phase centre from the calibrator (arcsec).
CENTRE_TOLERANCE_ARCSEC = 1.0
#: Parallel-hand correlation codes (XX, YY, RR, LL): they carry the model.
PARALLEL_HANDS = (-5, -8, 5, 8, 9, 12)
_ROWS_PER_BLOCK = 20_000


class ModelSummary(BaseModel):
    """What was written into MODEL_DATA."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    calibrator: str
    flux_min_jy: float
    flux_max_jy: float
    """Catalogue flux range over the band (Jy)."""
    response_min: float
    response_max: float
    """Beam response range over times and channels."""
    response_mean: float
    model_min_jy: float
    model_max_jy: float
    """Range of the model amplitude written (Jy); never zero."""


def model_amplitudes(
    cal: Calibrator, obs: GroupObservation, freqs_hz: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Model amplitude S(nu) A(theta(t), nu), shape (n_times, n_chan), with S and A.

    Returns:
        (model, flux (n_chan,), response (n_times, n_chan)).
    """
    centres = np.radians(np.array(obs.centres_icrs_deg))
    theta = separation_rad(
        math.radians(cal.ra_deg), math.radians(cal.dec_deg), centres[:, 0], centres[:, 1]
    )
    response = airy_power(theta[:, None], np.asarray(freqs_hz)[None, :])
    flux = np.asarray(cal.flux_jy(freqs_hz), dtype=np.float64)
    return flux[None, :] * response, flux, response


def check_phase_centre(cal: Calibrator, obs: GroupObservation) -> None:
    """The MS must have one field at the calibrator, else the point model is wrong."""
    if obs.phase_centre_deg is None:
        raise CalibrationError(
            f"{obs.paths[0]}: the MS has several fields; the calibrator model needs one "
            f"field at {cal.name} (convert the group in mode icrs at the calibrator)"
        )
    ra, dec = obs.phase_centre_deg
    off = math.degrees(
        float(
            separation_rad(
                math.radians(ra),
                math.radians(dec),
                math.radians(cal.ra_deg),
                math.radians(cal.dec_deg),
            )
        )
    )
    if off * 3600.0 > CENTRE_TOLERANCE_ARCSEC:
        raise CalibrationError(
            f"{obs.paths[0]}: phase centre ({ra:.5f}, {dec:.5f}) deg is {off * 3600:.1f} arcsec "
            f"from {cal.name}; phase the MS to the calibrator first"
        )


def _model_column(ms: object, nchan: int, npol: int) -> None:
    from casacore import tables

    if "MODEL_DATA" in ms.colnames():  # type: ignore[attr-defined]
        return
    desc = tables.makearrcoldesc(
        "MODEL_DATA", 0j, valuetype="complex", shape=[nchan, npol], comment="model data"
    )
    dminfo = {
        "TYPE": "TiledShapeStMan",
        "NAME": "ModelTiled",
        "SPEC": {"DEFAULTTILESHAPE": np.array([npol, nchan, max(1, 262144 // (8 * npol * nchan))])},
    }
    ms.addcols(tables.maketabdesc([desc]), dminfo)  # type: ignore[attr-defined]


def write_model_data(ms_path: Path, cal: Calibrator, obs: GroupObservation) -> ModelSummary:
    """Write S(nu) A(theta(t), nu) into MODEL_DATA (created if missing); check it.

    Raises:
        CalibrationError: if the MS is not phased to the calibrator, a row's time is not
            one of the group's integrations, or the model is zero or not finite.
    """
    from casacore import tables

    check_phase_centre(cal, obs)
    with tables.table(f"{ms_path}/SPECTRAL_WINDOW", ack=False) as sw:
        freqs = np.asarray(sw.getcell("CHAN_FREQ", 0), dtype=np.float64)
    with tables.table(f"{ms_path}/POLARIZATION", ack=False) as pt:
        corr = np.asarray(pt.getcell("CORR_TYPE", 0))
    model, flux, response = model_amplitudes(cal, obs, freqs)
    if not np.all(np.isfinite(model)) or model.min() <= 0.0:
        raise CalibrationError(f"{cal.name}: the model is zero or not finite in some channel")
    parallel = np.isin(corr, PARALLEL_HANDS)
    times = np.array(obs.times_mjd) * SECONDS_PER_DAY
    with tables.table(str(ms_path), ack=False, readonly=False) as ms:
        _model_column(ms, freqs.size, corr.size)
        for start in range(0, ms.nrows(), _ROWS_PER_BLOCK):
            n = min(_ROWS_PER_BLOCK, ms.nrows() - start)
            t = np.asarray(ms.getcol("TIME", start, n))
            k = np.clip(np.searchsorted(times, t - 1e-3), 0, times.size - 1)
            if np.any(np.abs(times[k] - t) > 1e-3):
                raise CalibrationError(
                    f"{ms_path}: rows with times outside the group's integrations"
                )
            block = np.zeros((n, freqs.size, corr.size), dtype=np.complex64)
            block[:, :, parallel] = model[k][:, :, None]
            ms.putcol("MODEL_DATA", block, start, n)
    summary = ModelSummary(
        calibrator=cal.name,
        flux_min_jy=float(flux.min()),
        flux_max_jy=float(flux.max()),
        response_min=float(response.min()),
        response_max=float(response.max()),
        response_mean=float(response.mean()),
        model_min_jy=float(model.min()),
        model_max_jy=float(model.max()),
    )
    logger.info(
        "MODEL_DATA of %s: %s, %.2f-%.2f Jy x beam %.3f-%.3f",
        ms_path,
        cal.name,
        summary.flux_min_jy,
        summary.flux_max_jy,
        summary.response_min,
        summary.response_max,
    )
    return summary
