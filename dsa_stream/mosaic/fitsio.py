"""FITS input and output of the mosaic stage: 2D planes of tiles, headers, atomic writes."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from dsa_stream import instrument, naming
from dsa_stream.exceptions import MosaicError
from dsa_stream.mosaic.options import MosaicTile
from dsa_stream.products.fsops import fsync_path

#: Header keywords holding the off-source rms of an image (first found wins).
RMS_KEYWORDS = ("QA_RMS", "QARMS", "RMS", "NOISE")
#: Header keywords holding the group key of an image (first found wins).
GROUP_KEYWORDS = ("GROUPKEY", "DSAGROUP", "GROUP")
#: Header keywords holding the identity of an image (first found wins).
IMAGE_ID_KEYWORDS = ("IMAGEID", "PRODID")

_MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)


def mjd(when: datetime) -> float:
    """Modified Julian Date of an aware datetime (UTC)."""
    return (when - _MJD_EPOCH).total_seconds() / 86400.0


def from_mjd(value: float) -> datetime:
    """Aware UTC datetime of a Modified Julian Date."""
    return _MJD_EPOCH + timedelta(days=float(value))


@dataclass(frozen=True)
class PlaneInfo:
    """Header facts of one 2D image plane."""

    shape: tuple[int, int]
    wcs: WCS
    header: fits.Header
    bmaj_deg: float | None
    bmin_deg: float | None
    bpa_deg: float | None
    freq_hz: float | None


def _image_hdu(hdul: fits.HDUList, path: Path) -> fits.ImageHDU | fits.PrimaryHDU:
    for hdu in hdul:
        if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU) and hdu.header.get("NAXIS", 0) >= 2:
            return hdu
    raise MosaicError(f"{path}: no image HDU")


def _celestial(header: fits.Header, path: Path) -> WCS:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        full = WCS(header)
    if not full.has_celestial or full.wcs.lng != 0 or full.wcs.lat != 1:
        raise MosaicError(f"{path}: the first two axes must be celestial (RA, Dec)")
    return full.celestial


def _freq(header: fits.Header) -> float | None:
    for axis in range(3, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{axis}", "")).upper().startswith("FREQ"):
            return float(header[f"CRVAL{axis}"])
    for key in ("FREQREF", "RESTFRQ", "RESTFREQ", "FREQ"):
        if key in header:
            return float(header[key])
    return None


def _info(header: fits.Header, path: Path) -> PlaneInfo:
    naxis = int(header.get("NAXIS", 0))
    extra = [int(header[f"NAXIS{i}"]) for i in range(3, naxis + 1)]
    if any(n != 1 for n in extra):
        raise MosaicError(f"{path}: axes beyond RA/Dec must be degenerate, got {extra}")
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))

    def _deg(key: str) -> float | None:
        return float(header[key]) if key in header else None

    return PlaneInfo(
        shape=shape,
        wcs=_celestial(header, path),
        header=header,
        bmaj_deg=_deg("BMAJ"),
        bmin_deg=_deg("BMIN"),
        bpa_deg=_deg("BPA"),
        freq_hz=_freq(header),
    )


def read_info(path: Path) -> PlaneInfo:
    """Header facts of an image (no data read)."""
    try:
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            return _info(_image_hdu(hdul, path).header.copy(), path)
    except OSError as exc:
        raise MosaicError(f"cannot read FITS {path}: {exc}") from exc


def read_plane(path: Path, dtype: type = np.float64) -> np.ndarray:
    """The 2D data of an image as ``dtype`` (native byte order; degenerate axes dropped)."""
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = _image_hdu(hdul, path)
            data = np.asarray(hdu.data, dtype=dtype)
    except OSError as exc:
        raise MosaicError(f"cannot read FITS {path}: {exc}") from exc
    if data.ndim < 2 or any(n != 1 for n in data.shape[:-2]):
        raise MosaicError(f"{path}: data shape {data.shape} is not a single 2D plane")
    return data.reshape(data.shape[-2:])


def same_grid(a: PlaneInfo, b: PlaneInfo, tol_px: float = 0.01) -> bool:
    """True when two planes share the pixel grid (shape and WCS within ``tol_px``)."""
    if a.shape != b.shape:
        return False
    ny, nx = a.shape
    xs = np.array([0.0, nx - 1.0, 0.0, nx - 1.0, (nx - 1) / 2])
    ys = np.array([0.0, 0.0, ny - 1.0, ny - 1.0, (ny - 1) / 2])
    lon, lat = a.wcs.pixel_to_world_values(xs, ys)
    bx, by = b.wcs.world_to_pixel_values(lon, lat)
    return bool(np.all(np.hypot(bx - xs, by - ys) < tol_px))


# -- atomic writes ----------------------------------------------------------------------


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary name next to ``path``; on success fsync it and rename it over.

    A crash leaves either the old file (or none) or the complete new one, plus at
    worst a ``.<name>.tmp-*`` file that the next attempt ignores.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_fits(path: Path, data: np.ndarray, header: fits.Header) -> None:
    """Write a primary-HDU FITS file atomically."""
    with atomic_target(path) as tmp:
        fits.PrimaryHDU(data=data, header=header).writeto(tmp, output_verify="exception")


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_target(path) as tmp:
        tmp.write_text(text)


# -- tiles from files ---------------------------------------------------------------------


def _header_time(header: fits.Header, date_key: str, mjd_key: str) -> datetime | None:
    if date_key in header:
        text = str(header[date_key]).strip().rstrip("Z")
        try:
            when = datetime.fromisoformat(text)
        except ValueError as exc:
            raise MosaicError(f"unreadable {date_key} = {header[date_key]!r}") from exc
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if mjd_key in header:
        return from_mjd(float(header[mjd_key]))
    return None


def _first(header: fits.Header, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in header and str(header[key]).strip():
            return str(header[key]).strip()
    return None


def tile_from_fits(
    image_path: Path,
    beam_path: Path,
    *,
    group_key: str | None = None,
    image_id: str | None = None,
    rms_jy: float | None = None,
) -> MosaicTile:
    """Describe a tile from its FITS headers.

    Observation start: ``DATE-OBS`` (or ``MJD-OBS``); end: ``DATE-END`` (or ``MJD-END``),
    else start + one DSA-110 observation (309.24 s). Dec: ``PNTDEC``, else the image
    centre. Group key: a keyword of
    :data:`GROUP_KEYWORDS`, else from the start. rms: :data:`RMS_KEYWORDS`, else None
    (computed when coadding). Image identity: :data:`IMAGE_ID_KEYWORDS`, else the file
    name and its xxh64 checksum.
    """
    info = read_info(image_path)
    h = info.header
    start = _header_time(h, "DATE-OBS", "MJD-OBS")
    if start is None:
        raise MosaicError(f"{image_path}: no DATE-OBS or MJD-OBS; cannot place it in time")
    end = _header_time(h, "DATE-END", "MJD-END") or start + timedelta(
        seconds=instrument.OBSERVATION_S
    )
    if image_id is None:
        image_id = _first(h, IMAGE_ID_KEYWORDS)
    if image_id is None:
        from dsa_stream.products.manifest import file_xxh64

        image_id = f"{image_path.name}#xxh64:{file_xxh64(image_path)}"
    if rms_jy is None and (text := _first(h, RMS_KEYWORDS)) is not None:
        rms_jy = float(text)
    return MosaicTile(
        group_key=group_key or _first(h, GROUP_KEYWORDS) or naming.group_key(start),
        image_path=image_path,
        beam_path=beam_path,
        image_id=image_id,
        obs_start=start,
        obs_end=end,
        dec_deg=float(h.get("PNTDEC", info.wcs.wcs.crval[1])),
        rms_jy=rms_jy if rms_jy and rms_jy > 0 else None,
    )
