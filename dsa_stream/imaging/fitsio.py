"""FITS products: one 2-D celestial grid, full provenance keywords, atomic writes.

Every product (image, residual, pb, pbcor) has the same header apart from BUNIT/BTYPE:

* WCS: ``RA---SIN``/``DEC--SIN`` (the imagers' projection about the phase centre),
  ``RADESYS = 'ICRS'``, CRVAL1 in [0, 360) (WSClean writes e.g. -103.7 for 256.3);
  WSClean writes the centre in casacore's J2000 frame (``EQUINOX = 2000``: 20 mas from
  the ICRS centre of the MS), which is converted back to ICRS (:func:`to_icrs`);
  the degenerate FREQ and STOKES axes of the imagers are dropped; the frequencies
  are keywords (FREQREF, FREQEFF, FREQMIN, FREQMAX, BANDWID, NCHAN) and the Stokes
  parameter is STOKES;
* observation: DATE-OBS/MJD-OBS (start of the first integration), DATE-END/MJD-END,
  DATE-AVG/MJD-AVG, TIMESYS, TELESCOP/INSTRUME ``DSA-110``, OBSGEO-X/Y/Z, OBJECT =
  group key;
* restoring beam BMAJ/BMIN/BPA (deg);
* provenance and QA keywords: :data:`KEYWORDS` (documented in docs/imaging.md).

Files are written under a temporary name in the destination directory, fsynced and
renamed into place, so a reader never sees a partial product.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning
from numpy.typing import NDArray

from dsa_stream.exceptions import ImagingError

#: Every keyword the stage writes beyond the WCS, with its meaning (docs and tests use it).
KEYWORDS: dict[str, str] = {
    "BUNIT": "brightness unit (JY/BEAM; absent in the pb product)",
    "BTYPE": "Intensity, or Beam for the pb product",
    "DSAPROD": "product kind: image, residual, pb, pbcor",
    "BMAJ": "restoring beam major axis FWHM (deg)",
    "BMIN": "restoring beam minor axis FWHM (deg)",
    "BPA": "restoring beam position angle, north through east (deg)",
    "TELESCOP": "DSA-110",
    "INSTRUME": "DSA-110",
    "ORIGIN": "dsa-stream",
    "OBJECT": "group key",
    "DATE": "file written (UTC, bookkeeping)",
    "TIMESYS": "UTC",
    "DATE-OBS": "start of the first integration (UTC, ISO)",
    "MJD-OBS": "start of the first integration (MJD UTC)",
    "DATE-END": "end of the last integration (UTC, ISO)",
    "MJD-END": "end of the last integration (MJD UTC)",
    "DATE-AVG": "middle of the observation (UTC, ISO)",
    "MJD-AVG": "middle of the observation (MJD UTC)",
    "TELAPSE": "observation span (s)",
    "OBSGEO-X": "array centre, ITRF X (m)",
    "OBSGEO-Y": "array centre, ITRF Y (m)",
    "OBSGEO-Z": "array centre, ITRF Z (m)",
    "OBSGEO-L": "array centre longitude (deg)",
    "OBSGEO-B": "array centre latitude (deg; wcslib's IAU 1976 ellipsoid, as X/Y/Z)",
    "OBSGEO-H": "array centre height (m; IAU 1976 ellipsoid, 3 m below WGS84)",
    "STOKES": "Stokes parameter imaged",
    "FREQREF": "reference frequency of the MFS image (Hz): the imager's band centre",
    "FREQEFF": "imaging-weighted mean frequency (Hz)",
    "FREQMIN": "lowest channel centre (Hz)",
    "FREQMAX": "highest channel centre (Hz)",
    "BANDWID": "total bandwidth (Hz)",
    "NCHAN": "channels in the MS",
    "DSAGROUP": "group key (observation start from the data)",
    "DSAMS": "Measurement Set imaged (base name; full path in HISTORY)",
    "DSAVERS": "dsa-stream version",
    "CFGHASH": "configuration hash (dsa-stream config), or 'none'",
    "OPTHASH": "hash of the imaging options that change the image",
    "BACKEND": "imager: wsclean or tclean",
    "BACKVER": "imager version (WSClean, or CASA for tclean)",
    "IMSIZE": "image width = height (pixels)",
    "CELLSIZE": "pixel size (arcsec)",
    "WEIGHTNG": "visibility weighting",
    "ROBUST": "Briggs robustness",
    "NITER": "minor-cycle iteration limit",
    "CLNGAIN": "minor-cycle loop gain",
    "MGAIN": "major-cycle gain",
    "THRESH": "absolute clean threshold (Jy)",
    "AUTOTHR": "auto-threshold (sigma), 0 if off",
    "AUTOMASK": "auto-mask (sigma), 0 if off or unsupported",
    "NMAJOR": "major-cycle limit",
    "UVMIN": "shortest uv distance used (lambda), 0 if unrestricted",
    "UVMAX": "longest uv distance used (lambda), 0 if unrestricted",
    "CHANOUT": "output channels joined in deconvolution",
    "DATACOL": "MS column imaged",
    "GRIDDER": "gridder",
    "PBMODEL": "primary beam model (airy)",
    "PBDIAM": "dish diameter of the beam model (m)",
    "PBCUT": "primary beam cutoff of the pbcor product",
    "PBWEIGHT": "weighting of integrations and channels in the beam average",
    "PBNTIME": "integrations averaged in the beam",
    "PBNCHAN": "channels averaged in the beam",
    "PBPNTSRC": "where the pointing centres come from",
    "PNTRA": "ICRS RA of the pointing at the middle integration (deg)",
    "PNTDEC": "ICRS Dec of the pointing at the middle integration (deg)",
    "PNTDRIFT": "angle the pointing drifted during the group (deg)",
    "NCALTAB": "calibration tables applied to the imaged data",
    "CALTABn": "table n (base name; full path in HISTORY)",
    "CALTYPn": "table n type (B Jones, G Jones)",
    "CALOBSn": "table n: start of the observation it was solved on (UTC, ISO)",
    "CALMJDn": "table n: first solution time (MJD UTC)",
    "SW*": "software versions (SWDSA, SWNUMPY, SWASTROP, SWCASATL, SWWSCLEA, ...)",
    "QAPASS": "image QA verdict",
    "QAFAIL": "failed QA checks, or 'none'",
    "QARMS": "robust off-source rms (Jy/beam)",
    "QARESRMS": "robust rms of the residual image (Jy/beam)",
    "QAPEAK": "image peak (Jy/beam)",
    "QADR": "dynamic range, peak / rms",
    "QANSRC": "expected sources checked",
    "QAFLXRAT": "median measured / expected flux of the checked sources",
    "QAPOSERR": "median position offset of the checked sources (beams)",
}

#: Keyword of each tracked software version.
SOFTWARE_KEYWORDS = {
    "dsa-stream": "SWDSA",
    "python": "SWPYTHON",
    "numpy": "SWNUMPY",
    "scipy": "SWSCIPY",
    "astropy": "SWASTROP",
    "pyuvdata": "SWPYUVDT",
    "h5py": "SWH5PY",
    "casatools": "SWCASATL",
    "casatasks": "SWCASATK",
    "casadata": "SWCASADT",
    "python-casacore": "SWPYCASA",
    "matplotlib": "SWMPL",
    "reproject": "SWREPROJ",
    "wsclean": "SWWSCLEA",
}


def read_backend_image(path: Path) -> tuple[NDArray[np.float32], fits.Header]:
    """The 2-D plane and header of an imager's FITS output (first FREQ/STOKES plane)."""
    if not path.exists():
        raise ImagingError(f"the imager did not write {path}")
    with fits.open(path, memmap=False) as hdul:
        header = hdul[0].header.copy()
        data = np.asarray(hdul[0].data, dtype=np.float32)
    while data.ndim > 2:
        data = data[0]
    return np.ascontiguousarray(data), header


def celestial_header(raw: fits.Header, cell_arcsec: float | None = None) -> fits.Header:
    """A clean 2-D ICRS SIN header from an imager's header (RA wrapped into [0, 360)).

    Args:
        raw: The imager's FITS header.
        cell_arcsec: The requested pixel size: CDELT is written exactly from it (the
            imagers round it differently), after checking the imager used it.

    Raises:
        ImagingError: the header has no RA/Dec SIN axes, or another pixel size.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(raw).celestial
    ctype = [str(c) for c in wcs.wcs.ctype]
    if ctype != ["RA---SIN", "DEC--SIN"]:
        raise ImagingError(f"unexpected celestial axes {ctype} (RA---SIN/DEC--SIN expected)")
    cdelt = np.array(wcs.wcs.get_cdelt(), dtype=np.float64)
    if cell_arcsec is not None:
        exact = np.array([-cell_arcsec, cell_arcsec]) / 3600.0
        if not np.allclose(cdelt, exact, rtol=1e-9, atol=0.0):
            raise ImagingError(
                f"the imager used pixels of {cdelt * 3600} arcsec, not {exact * 3600}"
            )
        cdelt = exact
    pc = wcs.wcs.get_pc()
    if not np.allclose(pc, np.eye(2), atol=1e-12):
        raise ImagingError("rotated image axes are not supported")
    crval = to_icrs(float(wcs.wcs.crval[0]), float(wcs.wcs.crval[1]), input_frame(raw))
    h = fits.Header()
    h["WCSAXES"] = 2
    h["CTYPE1"] = "RA---SIN"
    h["CTYPE2"] = "DEC--SIN"
    h["CRPIX1"] = float(wcs.wcs.crpix[0])
    h["CRPIX2"] = float(wcs.wcs.crpix[1])
    h["CRVAL1"] = (crval[0], "ICRS RA of the phase centre, [0, 360)")
    h["CRVAL2"] = (crval[1], "ICRS Dec of the phase centre")
    h["CDELT1"] = float(cdelt[0])
    h["CDELT2"] = float(cdelt[1])
    h["CUNIT1"] = "deg"
    h["CUNIT2"] = "deg"
    h["RADESYS"] = "ICRS"
    h["LONPOLE"] = 180.0
    h["LATPOLE"] = crval[1]
    return h


def input_frame(raw: fits.Header) -> str:
    """The celestial frame of an imager's header: ``ICRS`` or ``J2000``.

    ``RADESYS`` when present, else the FITS default: ``EQUINOX`` >= 1984 means FK5.
    WSClean writes ``EQUINOX = 2000`` and no ``RADESYS``; CASA writes ``RADESYS`` from
    the MS's reference frame.

    Raises:
        ImagingError: another frame or equinox (FK4, B1950, galactic, ...).
    """
    radesys = str(raw.get("RADESYS", raw.get("RADECSYS", ""))).strip().upper()
    equinox = raw.get("EQUINOX", raw.get("EPOCH"))
    if radesys == "ICRS" or (not radesys and equinox is None):
        return "ICRS"
    if radesys in ("FK5", "") and equinox is not None and abs(float(equinox) - 2000.0) < 1e-6:
        return "J2000"
    raise ImagingError(f"unsupported image frame RADESYS={radesys!r} EQUINOX={equinox!r}")


def to_icrs(ra_deg: float, dec_deg: float, frame: str) -> tuple[float, float]:
    """ICRS (RA in [0, 360), Dec) of a position given in ``frame`` (``ICRS``, ``J2000``).

    ``J2000`` is the mean equator and equinox of J2000.0 as casacore (and so both
    imagers) define it: ICRS rotated by the IAU 2000 frame bias (``erfa.bp00``), a
    rotation of ~23 mas. (astropy's ``FK5`` frame uses the Hipparcos-measured FK5
    orientation instead and differs from casacore's J2000 by up to ~30 mas.)
    """
    if frame == "ICRS":
        return ra_deg % 360.0, dec_deg
    if frame != "J2000":
        raise ImagingError(f"unsupported frame {frame!r}")
    import erfa

    bias, _, _ = erfa.bp00(2451545.0, 0.0)
    vec = np.asarray(bias).T @ erfa.s2c(math.radians(ra_deg), math.radians(dec_deg))
    ra, dec = erfa.c2s(vec)
    return math.degrees(float(ra)) % 360.0, math.degrees(float(dec))


def wcs_of(header: fits.Header) -> WCS:
    """The 2-D WCS of one of our headers."""
    return WCS(header)


def _time_cards(start_mjd: float, end_mjd: float) -> list[tuple[str, Any, str]]:
    mid = 0.5 * (start_mjd + end_mjd)

    def iso(mjd: float) -> str:
        return str(Time(mjd, format="mjd", scale="utc").isot)

    return [
        ("TIMESYS", "UTC", "time scale"),
        ("DATE-OBS", iso(start_mjd), "start of the first integration (UTC)"),
        ("MJD-OBS", start_mjd, "start of the first integration (MJD UTC)"),
        ("DATE-AVG", iso(mid), "middle of the observation (UTC)"),
        ("MJD-AVG", mid, "middle of the observation (MJD UTC)"),
        ("DATE-END", iso(end_mjd), "end of the last integration (UTC)"),
        ("MJD-END", end_mjd, "end of the last integration (MJD UTC)"),
        ("TELAPSE", (end_mjd - start_mjd) * 86400.0, "observation span (s)"),
    ]


def observation_cards(
    start_mjd: float,
    end_mjd: float,
    obsgeo_m: tuple[float, float, float],
    obsgeo_lbh: tuple[float, float, float],
) -> list[tuple[str, Any, str]]:
    """Telescope, times and site cards."""
    cards: list[tuple[str, Any, str]] = [
        ("TELESCOP", "DSA-110", "telescope"),
        ("INSTRUME", "DSA-110", "instrument"),
        ("ORIGIN", "dsa-stream", "software that wrote this file"),
    ]
    cards += _time_cards(start_mjd, end_mjd)
    cards += [
        ("OBSGEO-X", obsgeo_m[0], "array centre, ITRF (m)"),
        ("OBSGEO-Y", obsgeo_m[1], "array centre, ITRF (m)"),
        ("OBSGEO-Z", obsgeo_m[2], "array centre, ITRF (m)"),
        ("OBSGEO-L", obsgeo_lbh[0], "array centre longitude (deg)"),
        ("OBSGEO-B", obsgeo_lbh[1], "array centre latitude (deg, IAU 1976 ellipsoid)"),
        ("OBSGEO-H", obsgeo_lbh[2], "array centre height (m, IAU 1976 ellipsoid)"),
    ]
    return cards


def software_cards(versions: Mapping[str, str | None]) -> list[tuple[str, Any, str]]:
    """One SW* card per known package (``absent`` when it is not installed)."""
    return [
        (key, versions.get(name) or "absent", f"{name} version")
        for name, key in SOFTWARE_KEYWORDS.items()
        if name in versions
    ]


def _fit_comment(key: str, value: Any, comment: str) -> str:
    """The comment, shortened so that the card stays one 80-character line."""
    image = fits.Card(key, value).image.rstrip()
    if len(image) > 80:  # a long string continues on CONTINUE cards: no room to spare
        return ""
    room = 80 - len(image) - 3
    return comment if len(comment) <= room else comment[: max(0, room)]


def apply_cards(header: fits.Header, cards: Iterable[tuple[str, Any, str]]) -> None:
    """Set ``(key, value, comment)`` cards, replacing existing ones."""
    for key, value, comment in cards:
        if isinstance(value, float) and not np.isfinite(value):
            value = "nan"
        if isinstance(value, np.generic):
            value = value.item()
        header[key] = (value, _fit_comment(key, value, comment))


def add_history(header: fits.Header, lines: Iterable[str]) -> None:
    """Append HISTORY cards (long lines are wrapped by astropy)."""
    for line in lines:
        header.add_history(line)


def write_fits_atomic(path: Path, data: NDArray[np.floating], header: fits.Header) -> None:
    """Write a primary-HDU FITS file via a temporary name, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        hdu = fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32), header=header)
        hdu.writeto(tmp, overwrite=True, output_verify="exception")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write bytes via a temporary name, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
