"""Write subband files in the layout of the DSA-110 correlator writer (old UVH5 layout).

The real writer (dsa110-meridian-fs ``dsamfs/io.py``) creates the file with h5py,
writes the fixed header, creates resizable ``time_array``/``uvw_array``/``visdata``...
datasets of length 0 and appends integrations while ``Nblts``/``Ntimes`` grow. This
module does the same, so a file can be written in one go or in several appends (the
"slow" correlator mode). Differences that are on purpose: no wall-clock text in
``history``, no object timestamps (``track_times=False``) and fixed chunk shapes, so the
same content always gives the same bytes.

Datasets (``Header/``): latitude, longitude (deg), altitude (m), telescope_name
``OVRO_MMA``, instrument ``DSA``, object_name ``search``, history, phase_type ``drift``,
Nants_data, Nants_telescope (117), antenna_diameters, antenna_names (S4, "1".."117"),
antenna_numbers (0..116), antenna_positions (ECEF relative to the array centre), Nbls
(autos included), Nblts, Nfreqs, Npols, Ntimes, Nspws, uvw_array (float32),
time_array (JD), integration_time, freq_array (1, Nfreqs), channel_width (scalar,
negative for descending channels), spw_array [1], polarization_array [-5, -6],
ant_1_array, ant_2_array; ``Header/extra_keywords/``: phase_center_dec (rad),
ha_phase_center 0.0, phase_center_epoch ``HADEC``; ``Data/``: visdata complex64,
flags bool, nsamples float32, all (Nblts, 1, Nfreqs, Npols), uncompressed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import NDArray

from dsa_stream import instrument

logger = logging.getLogger(__name__)

#: Largest chunk of a visibility-shaped dataset (bytes); the correlator's chunks are 2-4 MB.
MAX_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class SubbandFile:
    """Everything one subband file holds."""

    static: dict[str, object]
    """Header datasets that do not grow (name -> value)."""
    extra_keywords: dict[str, object]
    """``Header/extra_keywords`` datasets."""
    nbls: int
    ntimes: int
    time_jd: NDArray[np.float64]
    """(Ntimes,) integration centres."""
    uvw_m: NDArray[np.float64]
    """(Nbls, 3) time-independent uvw."""
    ant1: NDArray[np.int64]
    """(Nbls,) first antenna numbers."""
    ant2: NDArray[np.int64]
    """(Nbls,) second antenna numbers."""
    visdata: NDArray[np.complex64]
    """(Ntimes * Nbls, Nfreqs, Npols) time-major data."""

    @property
    def nfreqs(self) -> int:
        """Number of channels."""
        return int(self.visdata.shape[1])


def static_header(
    *,
    rel_ecef_m: NDArray[np.float64],
    n_antennas_data: int,
    nbls: int,
    freqs_hz: NDArray[np.float64],
    channel_width_hz: float,
    history: str,
) -> dict[str, object]:
    """The fixed ``Header`` datasets, in the order the correlator writes them."""
    n_tel = rel_ecef_m.shape[0]
    names = np.array([str(k + 1) for k in range(n_tel)], dtype="S4")
    return {
        "latitude": np.float64(instrument.SITE_LAT_DEG),
        "longitude": np.float64(instrument.SITE_LON_DEG),
        "altitude": np.float64(instrument.SITE_ALT_M),
        "telescope_name": np.bytes_(instrument.CORRELATOR_TELESCOPE_NAME),
        "instrument": np.bytes_("DSA"),
        "object_name": np.bytes_("search"),
        "history": np.bytes_(history),
        "phase_type": np.bytes_("drift"),
        "Nants_data": np.int64(n_antennas_data),
        "Nants_telescope": np.int64(n_tel),
        "antenna_diameters": np.full(n_tel, instrument.DISH_DIAMETER_M),
        "antenna_names": names,
        "antenna_numbers": np.arange(n_tel, dtype=np.int64),
        "Nbls": np.int64(nbls),
        "Nfreqs": np.int64(freqs_hz.size),
        "Npols": np.int64(len(instrument.POLARIZATIONS)),
        "Nspws": np.int64(1),
        "freq_array": np.asarray(freqs_hz, dtype=np.float64)[None, :],
        "channel_width": np.float64(channel_width_hz),
        "spw_array": np.array([1], dtype=np.int64),
        "polarization_array": np.array(instrument.POLARIZATIONS, dtype=np.int64),
        "antenna_positions": np.asarray(rel_ecef_m, dtype=np.float64),
    }


def extra_keywords(dec0_rad: float) -> dict[str, object]:
    """``Header/extra_keywords``: the meridian (HA = 0) phase centre at the pointing Dec."""
    return {
        "phase_center_dec": np.float64(dec0_rad),
        "ha_phase_center": np.float64(0.0),
        "phase_center_epoch": np.bytes_("HADEC"),
    }


def _rows_per_chunk(nbls: int, row_bytes: int) -> int:
    return max(1, min(nbls, MAX_CHUNK_BYTES // max(1, row_bytes)))


class UVH5Writer:
    """An open subband file that grows by whole integrations, like the correlator's.

    Use :meth:`append` until :attr:`done`, then :meth:`close` (or the context manager).
    """

    def __init__(self, path: Path, content: SubbandFile) -> None:
        self.path = Path(path)
        self.content = content
        self.written = 0
        self._h5 = h5py.File(self.path, "w", libver="earliest")
        self._create()

    @property
    def done(self) -> bool:
        """True when every integration is in the file."""
        return self.written >= self.content.ntimes

    def _dataset(self, group: h5py.Group, name: str, value: object) -> None:
        group.create_dataset(name, data=value, track_times=False)

    def _grow(self, group: h5py.Group, name: str, shape: tuple[int, ...], dtype: object) -> None:
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
        chunk = (_rows_per_chunk(self.content.nbls, row_bytes), *shape[1:])
        group.create_dataset(
            name,
            shape=(0, *shape[1:]),
            maxshape=(None, *shape[1:]),
            dtype=dtype,
            chunks=chunk,
            track_times=False,
        )

    def _create(self) -> None:
        c = self.content
        header = self._h5.create_group("Header", track_order=False)
        data = self._h5.create_group("Data", track_order=False)
        for name, value in c.static.items():
            self._dataset(header, name, value)
        self._dataset(header, "Nblts", np.int64(0))
        self._dataset(header, "Ntimes", np.int64(0))
        self._grow(header, "ant_1_array", (0,), np.int64)
        self._grow(header, "ant_2_array", (0,), np.int64)
        self._grow(header, "uvw_array", (0, 3), np.float32)
        self._grow(header, "time_array", (0,), np.float64)
        self._grow(header, "integration_time", (0,), np.float64)
        extra = header.create_group("extra_keywords", track_order=False)
        for name, value in c.extra_keywords.items():
            self._dataset(extra, name, value)
        shape = (0, 1, c.nfreqs, len(instrument.POLARIZATIONS))
        self._grow(data, "visdata", shape, np.complex64)
        self._grow(data, "flags", shape, np.bool_)
        self._grow(data, "nsamples", shape, np.float32)
        self._h5.flush()

    def append(self, n_integrations: int) -> None:
        """Append the next ``n_integrations`` integrations and flush."""
        c = self.content
        t0 = self.written
        t1 = min(c.ntimes, t0 + n_integrations)
        if t1 <= t0:
            return
        r0, r1 = t0 * c.nbls, t1 * c.nbls
        nt = t1 - t0
        header, data = self._h5["Header"], self._h5["Data"]
        rows = {
            "ant_1_array": np.tile(c.ant1, nt),
            "ant_2_array": np.tile(c.ant2, nt),
            "uvw_array": np.tile(c.uvw_m.astype(np.float32), (nt, 1)),
            "time_array": np.repeat(c.time_jd[t0:t1], c.nbls),
            "integration_time": np.full(r1 - r0, instrument.INTEGRATION_S),
        }
        for name, values in rows.items():
            header[name].resize(r1, axis=0)
            header[name][r0:r1] = values
        vis = c.visdata[r0:r1][:, None, :, :]
        for name, values in (
            ("visdata", vis),
            ("flags", np.zeros(vis.shape, dtype=np.bool_)),
            ("nsamples", np.ones(vis.shape, dtype=np.float32)),
        ):
            data[name].resize(r1, axis=0)
            data[name][r0:r1] = values
        header["Nblts"][()] = r1
        header["Ntimes"][()] = t1
        self.written = t1
        self._h5.flush()

    def close(self) -> None:
        """Close the file (it is complete only if :attr:`done`)."""
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> UVH5Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_subband_file(path: Path, content: SubbandFile) -> int:
    """Write a whole subband file at once; return its size in bytes."""
    with UVH5Writer(path, content) as writer:
        writer.append(content.ntimes)
    return Path(path).stat().st_size
