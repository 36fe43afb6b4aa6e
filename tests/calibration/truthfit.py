"""Checks of calibrated data against the simulator's truth (helpers of the tests).

* :func:`fit_amplitudes`: the calibrated visibilities of a target group (an MS in mode
  ``fields``: every integration keeps its meridian phase centre, so its rows are the
  UVH5 rows with DATA = conj(V)) are fitted, by linear least squares over all
  cross-correlations, channels and both polarizations, as a sum of each modelled
  source's truth visibilities (the simulator's own point-source model: catalogue
  spectrum x Airy beam x geometry, recomputed from the truth) times one real
  amplitude per source. A perfect calibration gives 1 for every source; a gain error
  that is not a single common phase changes the amplitudes; the uncalibrated data give
  nonsense.
* :func:`gain_errors`: the solved total gain B x G of each antenna, polarization and
  channel against the injected one. The established convention: the CASA solution is
  ``conj(G_injected)`` times a common phase per polarization, fixed by the reference
  antenna; both are referenced to the reference antenna before comparing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from casacore import tables

from dsa_stream.simulate import SimulationOptions, SimulationTruth, plan_night
from dsa_stream.simulate.visibilities import GroupSky, model_visibilities

_PLANS: dict[str, Any] = {}


def _plan(opts: SimulationOptions) -> Any:
    key = opts.model_dump_json()
    if key not in _PLANS:
        _PLANS[key] = plan_night(opts)
    return _PLANS[key]


def _read(ms: Path, column: str) -> dict[str, Any]:
    with tables.table(str(ms), ack=False) as tb:
        out = {c: np.asarray(tb.getcol(c)) for c in ("ANTENNA1", "ANTENNA2", "TIME", "FLAG")}
        out["data"] = np.asarray(tb.getcol(column))
    with tables.table(f"{ms}/SPECTRAL_WINDOW", ack=False) as sw:
        out["freqs"] = np.asarray(sw.getcell("CHAN_FREQ", 0))
    return out


def fit_amplitudes(
    ms: Path, column: str, opts: SimulationOptions, truth: SimulationTruth, k: int
) -> dict[str, tuple[float, float]]:
    """Fitted amplitude and peak beam response of every source modelled in group ``k``."""
    plan = _plan(opts)
    d = _read(ms, column)
    times_s = (np.array(truth.groups[k].time_jd) - 2400000.5) * 86400.0
    tidx = np.searchsorted(times_s, d["TIME"] - 1e-3)
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(plan.ant1, plan.ant2, strict=True))}
    bidx = np.array(
        [index[(int(a), int(b))] for a, b in zip(d["ANTENNA1"], d["ANTENNA2"], strict=True)]
    )
    rows = tidx * plan.ant1.size + bidx
    sky = plan.group_skies[k]
    good = ~d["FLAG"] & (d["ANTENNA1"] != d["ANTENNA2"])[:, None, None]
    columns = []
    for s in range(len(sky.sources)):
        one = GroupSky(
            sources=(sky.sources[s],),
            l_dir=sky.l_dir[:, s : s + 1],
            m_dir=sky.m_dir[:, s : s + 1],
            n_dir=sky.n_dir[:, s : s + 1],
            peak_response=sky.peak_response[s : s + 1],
        )
        m = model_visibilities(plan.uvw_m, one, d["freqs"], True)[rows]
        columns.append(np.concatenate([m[good[:, :, p]] for p in range(good.shape[2])]))
    design = np.stack(columns, axis=1)
    v = np.conj(d["data"])  # back to the UVH5 convention of the model
    y = np.concatenate([v[:, :, p][good[:, :, p]] for p in range(good.shape[2])])
    amps, *_ = np.linalg.lstsq(
        np.concatenate([design.real, design.imag]), np.concatenate([y.real, y.imag]), rcond=None
    )
    return {
        src.name: (float(a), float(r))
        for src, a, r in zip(sky.sources, amps, sky.peak_response, strict=True)
    }


def gain_errors(bandpass: Path, gain: Path, truth: SimulationTruth) -> tuple[float, float, int]:
    """Largest phase error (deg), largest relative amplitude error, reference antenna index.

    Over every active antenna, polarization and channel with an unflagged solution.
    """
    with tables.table(str(bandpass), ack=False) as tb:
        b, bf = tb.getcol("CPARAM"), tb.getcol("FLAG")
        ant_b = tb.getcol("ANTENNA1")
    with tables.table(str(gain), ack=False) as tb:
        g, gf = tb.getcol("CPARAM"), tb.getcol("FLAG")
        ant_g, ref = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
    with tables.table(f"{bandpass}/SPECTRAL_WINDOW", ack=False) as sw:
        freqs = np.asarray(sw.getcell("CHAN_FREQ", 0))
    refant = int(np.unique(ref[~gf.all(axis=(1, 2))])[0])
    idx = np.array(truth.active_stations) - 1
    rb = {int(a): i for i, a in enumerate(ant_b)}
    rg = {int(a): i for i, a in enumerate(ant_g)}
    solved = np.array([b[rb[a]] * g[rg[a]] for a in idx])  # (nant, nchan, 2)
    flags = np.array([bf[rb[a]] | gf[rg[a]] for a in idx])
    expected = np.conj(truth.total_gain(freqs))  # the CASA convention (module docstring)
    k = int(np.flatnonzero(idx == refant)[0])
    s_ref = solved * np.conj(solved[k : k + 1]) / np.abs(solved[k : k + 1])
    e_ref = expected * np.conj(expected[k : k + 1]) / np.abs(expected[k : k + 1])
    phase = np.degrees(np.abs(np.angle(s_ref / e_ref)))[~flags]
    amp = np.abs(np.abs(solved) / np.abs(expected) - 1.0)[~flags]
    return float(phase.max()), float(amp.max()), refant
