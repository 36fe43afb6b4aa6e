"""Declare and change the phasing of DSA-110 meridian data (metadata only).

The correlator fringe-stops every integration on the meridian: the phase centre of
integration ``i`` is apparent (HA = 0, Dec = ``phase_center_dec``), i.e. apparent
RA = LST_i, although the files say "drift". :func:`relabel_meridian` states this truth
on a metadata-only :class:`pyuvdata.UVData` (one sidereal ICRS centre per integration,
the ICRS position of apparent (LST_i, Dec), uvw recomputed from the antenna positions;
the data are not touched). :func:`plan_phasing` then either keeps those centres (mode
``fields``) or moves everything to one centre (``midpoint``: ICRS of apparent
(LST(t_mid), Dec); ``icrs``: a given ICRS position) with pyuvdata's own ``phase``,
and returns the per-row change of w that the bulk data must be rotated by:

    V_new = V_old exp(-2 pi i (w_new - w_old) nu / c)      (pyuvdata convention)

pyuvdata's file/uvw convention is uvw = x(ant2) - x(ant1) with
V = sum S exp(+2 pi i (ul + vm + w(n - 1)) nu / c); the MS stores UVW = -uvw and
DATA = conj(V) (``pyuvdata_flip_conj``), as pyuvdata's own ``write_ms`` does.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.time import Time
from numpy.typing import NDArray
from pyuvdata import UVData
from pyuvdata.utils.phasing import transform_app_to_icrs
from pyuvdata.utils.times import get_lst_for_time

import dsa_stream.casa_env  # noqa: F401  (astropy offline)
from dsa_stream import instrument
from dsa_stream.conversion.inputs import GroupInputs
from dsa_stream.conversion.options import ConvertOptions, MeridianCentre
from dsa_stream.exceptions import ConversionError, InputFileError

#: Name of the single field in mode ``midpoint``.
MIDPOINT_NAME = "meridian_mid"
#: Name of the single field in mode ``icrs`` when none is given.
ICRS_NAME = "icrs_centre"


@dataclass
class PhasingPlan:
    """The metadata object as it will be written, and how to rotate the data."""

    uv: UVData
    """Metadata-only UVData: final uvw, phase centres, full ascending band."""
    dw_m: NDArray[np.float64]
    """(Nblts,) w_new - w_old (m); zero in mode ``fields``."""
    centres: tuple[MeridianCentre, ...]
    """Per-integration meridian centres of the input."""
    centre_app_rad: NDArray[np.float64]
    """(Ntimes, 2) apparent (RA = LST, Dec) of the meridian centres."""
    field_name: str
    field_icrs_deg: tuple[float, float] | None
    """The single phase centre (None in mode ``fields``)."""
    dec0_rad: float


def _telescope_loc(uv: UVData) -> tuple[float, float, float]:
    lat, lon, alt = uv.telescope.location_lat_lon_alt
    return float(lat), float(lon), float(alt)


def load_metadata(group: GroupInputs) -> UVData:
    """Metadata-only UVData of the group, with the full ascending band of all subbands.

    One file is read with pyuvdata (``read_data=False``); the input checks guarantee
    that the others agree on everything but the frequencies.
    """
    uv = UVData()
    path = group.first.path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uv.read(
                str(path),
                file_type="uvh5",
                read_data=False,
                run_check=False,
                run_check_acceptability=False,
                check_extra=False,
            )
    except Exception as exc:  # pyuvdata raises many types for bad files
        raise InputFileError(f"{path}: pyuvdata cannot read the header ({exc})") from exc
    uv.uvw_array = np.asarray(uv.uvw_array, dtype=np.float64)
    freqs = group.full_band_hz()
    uv.freq_array = freqs
    uv.channel_width = np.full(freqs.size, group.channel_width_hz)
    uv.flex_spw_id_array = np.full(freqs.size, uv.spw_array[0], dtype=int)
    uv.Nfreqs = freqs.size
    uv.telescope.name = instrument.TELESCOPE_NAME
    uv.telescope.antenna_diameters = np.full(uv.telescope.Nants, instrument.DISH_DIAMETER_M)
    uv.blt_order = ("time", "baseline")
    return uv


def meridian_centres(
    uv: UVData, dec0_rad: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Times (JD), LSTs and ICRS (RA, Dec) of apparent (HA = 0, dec0) per integration (rad)."""
    times = np.unique(uv.time_array)
    lst = np.asarray(get_lst_for_time(times, telescope_loc=uv.telescope.location))
    ra, dec = transform_app_to_icrs(
        time_array=times,
        app_ra=lst,
        app_dec=np.full(times.size, dec0_rad),
        telescope_loc=_telescope_loc(uv),
    )
    return times, lst, np.asarray(ra), np.asarray(dec)


def relabel_meridian(uv: UVData, dec0_rad: float, name_fmt: str = "meridian_t{:02d}") -> None:
    """Attach the true per-integration meridian centres to ``uv`` (data untouched)."""
    times, _lst, ra, dec = meridian_centres(uv, dec0_rad)
    uv.phase_center_catalog = {}
    ids = np.zeros(times.size, dtype=int)
    for k in range(times.size):
        ids[k] = uv._add_phase_center(
            cat_name=name_fmt.format(k),
            cat_type="sidereal",
            cat_lon=float(ra[k]),
            cat_lat=float(dec[k]),
            cat_frame="icrs",
            cat_epoch=2000.0,
            info_source="dsa-stream meridian relabel",
        )
    uv.phase_center_id_array = ids[np.searchsorted(times, uv.time_array)]
    uv.Nphase = len(uv.phase_center_catalog)
    uv._set_app_coords_helper()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.set_uvws_from_antenna_positions(update_vis=False)


def midpoint_centre(uv: UVData, dec0_rad: float) -> tuple[float, float]:
    """ICRS (RA, Dec) in radians of apparent (LST(t_mid), dec0), t_mid the group mid-time."""
    tmid = np.array([0.5 * (uv.time_array.min() + uv.time_array.max())])
    lst = np.asarray(get_lst_for_time(tmid, telescope_loc=uv.telescope.location))
    ra, dec = transform_app_to_icrs(
        time_array=tmid,
        app_ra=lst,
        app_dec=np.array([dec0_rad]),
        telescope_loc=_telescope_loc(uv),
    )
    return float(ra[0]), float(dec[0])


def plan_phasing(group: GroupInputs, options: ConvertOptions) -> PhasingPlan:
    """Relabel the meridian centres and phase the metadata as ``options.mode`` asks."""
    uv = load_metadata(group)
    dec0 = group.first.dec_rad
    times, lst, ra, dec = meridian_centres(uv, dec0)
    mjd = Time(times, format="jd", scale="utc").mjd
    centres = tuple(
        MeridianCentre(
            time_mjd=float(mjd[k]),
            lst_deg=math.degrees(float(lst[k])),
            ra_deg=math.degrees(float(ra[k])),
            dec_deg=math.degrees(float(dec[k])),
        )
        for k in range(times.size)
    )
    prefix = (options.phase_center_name if options.mode == "fields" else None) or "meridian"
    relabel_meridian(uv, dec0, prefix + "_t{:02d}")
    w_old = uv.uvw_array[:, 2].copy()
    field_icrs: tuple[float, float] | None = None
    name = prefix
    if options.mode != "fields":
        if options.mode == "midpoint":
            ra_c, dec_c = midpoint_centre(uv, dec0)
            name = options.phase_center_name or MIDPOINT_NAME
        else:
            assert options.phase_center_deg is not None
            ra_c, dec_c = (math.radians(v) for v in options.phase_center_deg)
            name = options.phase_center_name or ICRS_NAME
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uv.phase(ra=ra_c, dec=dec_c, epoch="J2000", cat_name=name, cat_type="sidereal")
        field_icrs = (math.degrees(ra_c) % 360.0, math.degrees(dec_c))
    dw = uv.uvw_array[:, 2] - w_old
    if not np.all(np.isfinite(uv.uvw_array)):
        raise ConversionError("phasing produced non-finite uvw")
    return PhasingPlan(
        uv=uv,
        dw_m=dw,
        centres=centres,
        centre_app_rad=np.column_stack([lst, np.full(lst.size, dec0)]),
        field_name=name,
        field_icrs_deg=field_icrs,
        dec0_rad=dec0,
    )


def field_index_per_row(uv: UVData) -> NDArray[np.int32]:
    """FIELD_ID of every row: the position of its phase centre in the catalogue."""
    out = np.empty(uv.Nblts, dtype=np.int32)
    for idx, cat_id in enumerate(uv.phase_center_catalog):
        out[uv.phase_center_id_array == cat_id] = idx
    return out
