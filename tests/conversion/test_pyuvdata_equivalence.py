"""Our MS against pyuvdata's own conversion of the same group (read, relabel, phase, write_ms)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from casacore import tables
from pyuvdata import UVData
from pyuvdata.utils.phasing import transform_app_to_icrs
from pyuvdata.utils.times import get_lst_for_time

from dsa_stream import instrument


def pyuvdata_convert(files: list[Path], out: Path) -> None:
    """The reference: pyuvdata per-file read, fast_concat, meridian relabel, phase, write_ms."""
    uvs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in files:
            uv = UVData()
            uv.read(str(f), file_type="uvh5", run_check=False, run_check_acceptability=False)
            uv.uvw_array = uv.uvw_array.astype(np.float64)
            uvs.append(uv)
        uvs.sort(key=lambda u: -u.freq_array.max())
        uv = uvs[0].fast_concat(uvs[1:], axis="freq", run_check=False)
        uv.reorder_freqs(channel_order="freq")
        uv.channel_width = np.abs(uv.channel_width)
        dec0 = float(uv.extra_keywords["phase_center_dec"])
        times, inv = np.unique(uv.time_array, return_inverse=True)
        loc = uv.telescope.location
        lat, lon, alt = uv.telescope.location_lat_lon_alt
        lst = get_lst_for_time(times, telescope_loc=loc)
        ra, dec = transform_app_to_icrs(
            time_array=times,
            app_ra=lst,
            app_dec=np.full(times.size, dec0),
            telescope_loc=(lat, lon, alt),
        )
        uv.phase_center_catalog = {}
        ids = [
            uv._add_phase_center(
                cat_name=f"m{k}",
                cat_type="sidereal",
                cat_lon=ra[k],
                cat_lat=dec[k],
                cat_frame="icrs",
                cat_epoch=2000.0,
            )
            for k in range(times.size)
        ]
        uv.phase_center_id_array = np.asarray(ids)[inv]
        uv.Nphase = len(ids)
        uv._set_app_coords_helper()
        uv.set_uvws_from_antenna_positions(update_vis=False)
        tmid = np.array([0.5 * (times.min() + times.max())])
        lst_mid = get_lst_for_time(tmid, telescope_loc=loc)
        ra_m, dec_m = transform_app_to_icrs(
            time_array=tmid, app_ra=lst_mid, app_dec=np.array([dec0]), telescope_loc=(lat, lon, alt)
        )
        uv.phase(
            ra=float(ra_m[0]),
            dec=float(dec_m[0]),
            epoch="J2000",
            cat_name="mid",
            cat_type="sidereal",
        )
        uv.write_ms(str(out), clobber=True, run_check=False)


@pytest.fixture(scope="module")
def reference_ms(small_group, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pyuvdata") / "ref.ms"
    pyuvdata_convert(small_group[0], out)
    return out


def _col(ms: Path, col: str, sub: str = "") -> np.ndarray:
    with tables.table(f"{ms}/{sub}" if sub else str(ms), ack=False) as tb:
        return np.asarray(tb.getcol(col))


def test_data_and_uvw_match_pyuvdata(small_ms, reference_ms):
    ours, result = small_ms
    assert result.n_channels == 16 * 4
    d_ours, d_ref = _col(ours, "DATA"), _col(reference_ms, "DATA")
    assert d_ours.shape == d_ref.shape
    scale = np.abs(d_ref).max()
    assert np.abs(d_ours - d_ref).max() <= 2e-6 * scale
    assert np.abs(_col(ours, "UVW") - _col(reference_ms, "UVW")).max() < 1e-3
    for col in ("TIME", "ANTENNA1", "ANTENNA2", "INTERVAL", "EXPOSURE", "FIELD_ID"):
        np.testing.assert_allclose(_col(ours, col), _col(reference_ms, col), rtol=0, atol=1e-6)
    # Same flags on cross-correlations (ours also flags the autocorrelations).
    a1, a2 = _col(ours, "ANTENNA1"), _col(ours, "ANTENNA2")
    cross = a1 != a2
    np.testing.assert_array_equal(_col(ours, "FLAG")[cross], _col(reference_ms, "FLAG")[cross])
    assert _col(ours, "FLAG")[~cross].all()


def test_subtables_match_pyuvdata(small_ms, reference_ms):
    ours, _ = small_ms
    for sub, cols in {
        "ANTENNA": ("POSITION", "NAME"),
        "SPECTRAL_WINDOW": ("CHAN_FREQ", "CHAN_WIDTH", "NUM_CHAN"),
        "POLARIZATION": ("CORR_TYPE",),
        "FIELD": ("PHASE_DIR", "REFERENCE_DIR", "DELAY_DIR"),
    }.items():
        for col in cols:
            a, b = _col(ours, col, sub), _col(reference_ms, col, sub)
            if a.dtype.kind in "fc":
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9, err_msg=f"{sub}.{col}")
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{sub}.{col}")
    # Where we deliberately differ from pyuvdata's write_ms:
    assert _col(ours, "TELESCOPE_NAME", "OBSERVATION")[0] == instrument.TELESCOPE_NAME
    assert set(_col(ours, "MOUNT", "ANTENNA")) == {"ALT-AZ"}
    np.testing.assert_allclose(_col(ours, "DISH_DIAMETER", "ANTENNA"), instrument.DISH_DIAMETER_M)
    tr = _col(ours, "TIME_RANGE", "OBSERVATION")[0]
    t = _col(ours, "TIME")
    tint = instrument.INTEGRATION_S
    np.testing.assert_allclose(tr, [t.min() - tint / 2, t.max() + tint / 2], atol=1e-6)
    assert np.all(np.diff(_col(ours, "CHAN_FREQ", "SPECTRAL_WINDOW")[0]) > 0)
    with tables.table(str(ours), ack=False) as tb:
        assert tb.getkeyword("pyuvdata_flip_conj")
