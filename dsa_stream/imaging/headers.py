"""The FITS header of every imaging product: WCS, observation, provenance, PB and QA cards.

The keyword list and meanings are :data:`dsa_stream.imaging.fitsio.KEYWORDS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from astropy.io import fits
from astropy.time import Time

from dsa_stream import __version__, instrument
from dsa_stream.imaging.fitsio import (
    add_history,
    apply_cards,
    observation_cards,
    software_cards,
)
from dsa_stream.imaging.msinfo import MsInfo
from dsa_stream.imaging.options import CalibrationRecord, ImagingOptions, QaReport, RestoringBeam

Card = tuple[str, Any, str]

#: BUNIT / BTYPE / comment of each product kind.
PRODUCT_KINDS: dict[str, tuple[str | None, str, str]] = {
    "image": ("JY/BEAM", "Intensity", "restored image, not primary-beam corrected"),
    "residual": ("JY/BEAM", "Intensity", "residual image"),
    "pb": (None, "Beam", "drift- and band-averaged primary beam"),
    "pbcor": ("JY/BEAM", "Intensity", "primary-beam-corrected image (NaN below PBCUT)"),
}


@dataclass(frozen=True)
class HeaderMeta:
    """Everything the product headers record."""

    info: MsInfo
    options: ImagingOptions
    group_key: str
    backend_version: str
    command: tuple[str, ...]
    beam: RestoringBeam
    ref_freq_hz: float
    eff_freq_hz: float
    drift_deg: float
    calibration: tuple[CalibrationRecord, ...]
    software: Mapping[str, str | None]
    config_hash: str | None
    qa: QaReport
    written_utc: datetime


def site_itrf_m() -> tuple[float, float, float]:
    """ITRF (X, Y, Z) of the DSA-110 array centre (m)."""
    from astropy import units as u
    from astropy.coordinates import EarthLocation

    loc = EarthLocation.from_geodetic(
        instrument.SITE_LON_DEG * u.deg, instrument.SITE_LAT_DEG * u.deg, instrument.SITE_ALT_M
    )
    return tuple(float(v.to_value(u.m)) for v in (loc.x, loc.y, loc.z))  # type: ignore[return-value]


#: The ellipsoid wcslib uses to relate OBSGEO-X/Y/Z and OBSGEO-L/B/H (IAU 1976). Writing
#: L/B/H on it keeps astropy's WCS from reporting a 3 m "inconsistency" against WGS84.
WCSLIB_ELLIPSOID = (6378140.0, 1.0 / 298.257)


def geodetic_wcslib(xyz: tuple[float, float, float]) -> tuple[float, float, float]:
    """(lon deg, lat deg, height m) of an ITRF position on wcslib's IAU 1976 ellipsoid."""
    x, y, z = xyz
    a, f = WCSLIB_ELLIPSOID
    e2 = f * (2.0 - f)
    p = math.hypot(x, y)
    lat = math.atan2(z, p * (1.0 - e2))
    height = 0.0
    for _ in range(10):
        n = a / math.sqrt(1.0 - e2 * math.sin(lat) ** 2)
        height = p / math.cos(lat) - n
        lat = math.atan2(z, p * (1.0 - e2 * n / (n + height)))
    return math.degrees(math.atan2(y, x)), math.degrees(lat), height


def _iso(mjd: float | None) -> str:
    return "unknown" if mjd is None else str(Time(mjd, format="mjd", scale="utc").isot)


def _num(value: float | None) -> float:
    return 0.0 if value is None else float(value)


def imaging_cards(meta: HeaderMeta) -> list[Card]:
    """Backend and its parameters."""
    o = meta.options
    gridder = o.wsclean_gridder if o.backend == "wsclean" else o.tclean_gridder
    automask = o.auto_mask_sigma if o.backend == "wsclean" else None
    return [
        ("BACKEND", o.backend, "imager"),
        ("BACKVER", meta.backend_version, "imager version"),
        ("IMSIZE", o.size_px, "image width = height (pixels)"),
        ("CELLSIZE", o.cell_arcsec, "pixel size (arcsec)"),
        ("WEIGHTNG", o.weighting, "visibility weighting"),
        ("ROBUST", o.robust, "Briggs robustness"),
        ("NITER", o.niter, "minor-cycle iteration limit"),
        ("CLNGAIN", o.gain, "minor-cycle loop gain"),
        ("MGAIN", o.mgain, "major-cycle gain"),
        ("THRESH", o.threshold_jy, "absolute clean threshold (Jy)"),
        ("AUTOTHR", _num(o.auto_threshold_sigma), "auto-threshold (sigma), 0 = off"),
        ("AUTOMASK", _num(automask), "auto-mask (sigma), 0 = off or unsupported"),
        ("NMAJOR", o.max_major_cycles, "major-cycle limit"),
        ("UVMIN", _num(o.uv_min_lambda), "shortest uv distance (lambda), 0 = all"),
        ("UVMAX", _num(o.uv_max_lambda), "longest uv distance (lambda), 0 = all"),
        ("CHANOUT", o.channels_out, "output channels joined in deconvolution"),
        ("DATACOL", o.data_column, "MS column imaged"),
        ("GRIDDER", gridder, "gridder"),
        ("STOKES", o.pol, "Stokes parameter"),
    ]


def frequency_cards(meta: HeaderMeta) -> list[Card]:
    """The band of the image."""
    f = meta.info.freqs_hz
    return [
        ("FREQREF", meta.ref_freq_hz, "MFS reference frequency (Hz), imager band centre"),
        ("FREQEFF", meta.eff_freq_hz, "imaging-weighted mean frequency (Hz)"),
        ("FREQMIN", float(f.min()), "lowest channel centre (Hz)"),
        ("FREQMAX", float(f.max()), "highest channel centre (Hz)"),
        ("BANDWID", float(f.max() - f.min() + meta.info.chan_width_hz), "bandwidth (Hz)"),
        ("NCHAN", int(f.size), "channels in the MS"),
    ]


def beam_cards(meta: HeaderMeta) -> list[Card]:
    """The primary-beam model and the pointing."""
    ra, dec = meta.info.pointing_mid_deg()
    return [
        ("PBMODEL", "airy", "Airy power pattern of a uniformly lit dish"),
        ("PBDIAM", instrument.DISH_DIAMETER_M, "dish diameter (m)"),
        ("PBCUT", meta.options.pb_cutoff, "pbcor is NaN where pb < PBCUT"),
        ("PBWEIGHT", meta.options.pb_weighting, "weights of integrations/channels in pb"),
        ("PBNTIME", int(meta.info.times_mjd.size), "integrations averaged in pb"),
        ("PBNCHAN", int(meta.info.freqs_hz.size), "channels averaged in pb"),
        ("PBPNTSRC", meta.info.pointing_source, "source of the pointing centres"),
        ("PNTRA", ra, "ICRS RA of the mid-group pointing (deg)"),
        ("PNTDEC", dec, "ICRS Dec of the mid-group pointing (deg)"),
        ("PNTDRIFT", meta.drift_deg, "pointing drift during the group (deg)"),
    ]


def provenance_cards(meta: HeaderMeta) -> list[Card]:
    """Group, MS, versions, hashes and calibration tables."""
    cards: list[Card] = [
        ("DSAGROUP", meta.group_key, "group key (observation start from the data)"),
        ("OBJECT", meta.group_key, "DSA-110 drift-scan group"),
        ("DSAMS", meta.info.path.name, "Measurement Set imaged"),
        ("DSAVERS", __version__, "dsa-stream version"),
        ("CFGHASH", meta.config_hash or "none", "dsa-stream configuration hash"),
        ("OPTHASH", meta.options.content_hash(), "imaging options hash"),
        ("NCALTAB", len(meta.calibration), "calibration tables applied"),
    ]
    for k, rec in enumerate(meta.calibration, start=1):
        cards += [
            (f"CALTAB{k}", rec.path.rstrip("/").rsplit("/", 1)[-1], "calibration table"),
            (f"CALTYP{k}", rec.type or "unknown", "calibration table type"),
            (f"CALOBS{k}", _iso(rec.obs_start_mjd), "solved on observation at (UTC)"),
            (f"CALMJD{k}", _num(rec.obs_start_mjd), "first solution time (MJD), 0 = unknown"),
        ]
    cards += software_cards(meta.software)
    return cards


def qa_cards(qa: QaReport) -> list[Card]:
    """The QA verdict and metrics."""
    failed = ",".join(qa.failures()) or "none"
    return [
        ("QAPASS", bool(qa.passed), "image QA verdict"),
        ("QAFAIL", failed, "failed QA checks"),
        ("QARMS", qa.rms_jy, "robust off-source rms (Jy/beam)"),
        ("QARESRMS", _num(qa.residual_rms_jy), "robust residual rms (Jy/beam)"),
        ("QAPEAK", qa.peak_jy, "image peak (Jy/beam)"),
        ("QADR", qa.dynamic_range, "dynamic range (peak / rms)"),
        ("QANSRC", qa.n_checked, "expected sources checked"),
        ("QAFLXRAT", _num(qa.flux_ratio_median), "median measured/expected flux, 0 = n/a"),
        ("QAPOSERR", _num(qa.position_offset_median_beams), "median offset (beams), 0 = n/a"),
    ]


def history_lines(meta: HeaderMeta) -> list[str]:
    """HISTORY: the imager call, the MS, the calibration tables and the beam rule."""
    lines = [
        f"dsa-stream {__version__} imaging of {meta.info.path}",
        f"imager {meta.options.backend} ({meta.backend_version}): " + " ".join(meta.command),
    ]
    for rec in meta.calibration:
        lines.append(
            f"calibration {rec.type or 'table'} {rec.path} solved on {_iso(rec.obs_start_mjd)}"
            f" .. {_iso(rec.obs_end_mjd)} (from {rec.source})"
        )
    if not meta.calibration:
        lines.append("calibration: no tables recorded for the imaged data")
    lines.append(
        "pb: Airy power beam (D = 4.65 m) averaged over the group's integrations "
        f"(pointing from {meta.info.pointing_source}) and channels with the "
        f"{meta.options.pb_weighting} weights; pbcor = image / pb where pb >= "
        f"{meta.options.pb_cutoff}, NaN elsewhere"
    )
    return lines


def product_header(base: fits.Header, meta: HeaderMeta, kind: str) -> fits.Header:
    """The complete header of one product kind (``image``, ``residual``, ``pb``, ``pbcor``)."""
    bunit, btype, what = PRODUCT_KINDS[kind]
    h = base.copy()
    cards: list[Card] = []
    if bunit is not None:
        cards.append(("BUNIT", bunit, "brightness unit"))
    cards += [("BTYPE", btype, what), ("DSAPROD", kind, "dsa-stream product kind")]
    cards += [
        ("BMAJ", meta.beam.bmaj_arcsec / 3600.0, "restoring beam major axis (deg)"),
        ("BMIN", meta.beam.bmin_arcsec / 3600.0, "restoring beam minor axis (deg)"),
        ("BPA", meta.beam.bpa_deg, "restoring beam position angle (deg)"),
    ]
    xyz = site_itrf_m()
    cards += observation_cards(
        meta.info.time_start_mjd, meta.info.time_end_mjd, xyz, geodetic_wcslib(xyz)
    )
    cards.append(("DATE", meta.written_utc.strftime("%Y-%m-%dT%H:%M:%S"), "file written (UTC)"))
    cards += frequency_cards(meta) + imaging_cards(meta) + beam_cards(meta)
    cards += provenance_cards(meta) + qa_cards(meta.qa)
    apply_cards(h, cards)
    add_history(h, history_lines(meta))
    return h
