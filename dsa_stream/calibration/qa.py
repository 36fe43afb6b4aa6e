"""Quality assessment of a solved table set (bandpass + gains).

Metrics (over the antennas that have data in the calibrator group):

* flagged fraction of the bandpass and of the gain solutions;
* median SNR of each table (CASA's SNR column);
* per antenna: flagged fractions, bandpass amplitude scatter and phase noise (robust
  standard deviation of channel-to-channel differences / sqrt 2, after removing their
  median, so a smooth slope such as a residual delay does not count), gain amplitude and
  phase rms over the solution times, and whether the gain amplitude is an outlier
  (further than ``outlier_mad`` robust sigmas from the array median).

A set fails QA when a threshold of :class:`~dsa_stream.calibration.options.QaThresholds`
is crossed; failed sets are registered as rejected and never applied. Tables are read
with python-casacore (parent process).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from dsa_stream.calibration.options import QaThresholds
from dsa_stream.exceptions import CalibrationError

_FROZEN = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Solutions:
    """The solutions of one CASA table, by antenna name."""

    path: Path
    viscal: str
    times_s: NDArray[np.float64]
    """(nrow,) solution times (MJD seconds)."""
    antenna: NDArray[np.int64]
    """(nrow,) antenna index."""
    refant: NDArray[np.int64]
    """(nrow,) reference antenna index (ANTENNA2)."""
    cparam: NDArray[np.complex64]
    """(nrow, nchan, nfeed)."""
    flag: NDArray[np.bool_]
    snr: NDArray[np.float32]
    names: tuple[str, ...]
    """Antenna names of the table's ANTENNA subtable (index -> name)."""
    freqs_hz: NDArray[np.float64]

    def rows_of(self, name: str) -> NDArray[np.int64]:
        """Rows of one antenna (by name)."""
        if name not in self.names:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.antenna == self.names.index(name))


def read_solutions(path: Path) -> Solutions:
    """Read a CASA calibration table (complex B or G Jones)."""
    from casacore import tables

    if not (Path(path) / "table.dat").exists():
        raise CalibrationError(f"{path}: not a CASA table")
    with tables.table(str(path), ack=False) as tb:
        viscal = str(tb.getkeywords().get("VisCal", ""))
        out = {
            "times_s": np.asarray(tb.getcol("TIME"), dtype=np.float64),
            "antenna": np.asarray(tb.getcol("ANTENNA1"), dtype=np.int64),
            "refant": np.asarray(tb.getcol("ANTENNA2"), dtype=np.int64),
            "cparam": np.asarray(tb.getcol("CPARAM")),
            "flag": np.asarray(tb.getcol("FLAG")),
            "snr": np.asarray(tb.getcol("SNR")),
        }
    with tables.table(f"{path}/ANTENNA", ack=False) as at:
        names = tuple(str(n) for n in at.getcol("NAME"))
    with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as sw:
        freqs = np.asarray(sw.getcell("CHAN_FREQ", 0), dtype=np.float64)
    return Solutions(path=Path(path), viscal=viscal, names=names, freqs_hz=freqs, **out)


class AntennaQa(BaseModel):
    """QA of one antenna."""

    model_config = _FROZEN

    name: str
    bandpass_flagged: float
    gain_flagged: float
    bandpass_amp_scatter: float | None
    """Robust channel-to-channel scatter of |B| (fraction; None when all flagged)."""
    bandpass_phase_noise_deg: float | None
    gain_amplitude: float | None
    """Mean |G| over solutions and feeds (None when all flagged)."""
    gain_phase_rms_deg: float
    """Rms of the gain phase over solution times (0 with one solution)."""
    outlier: bool


class QaReport(BaseModel):
    """QA of a table set, with its verdict."""

    model_config = _FROZEN

    passed: bool
    problems: tuple[str, ...]
    """Thresholds crossed (the set is rejected)."""
    warnings: tuple[str, ...]
    bandpass_flagged: float
    gain_flagged: float
    bandpass_snr_median: float
    gain_snr_median: float
    n_antennas_data: int
    n_antennas_solved: int
    outliers: tuple[str, ...]
    phase_noise_deg_median: float | None
    refant_used: tuple[str, ...]
    """Reference antenna(s) CASA actually used (ANTENNA2 of the unflagged solutions)."""
    antennas: tuple[AntennaQa, ...]


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _robust_std(x: NDArray[np.float64]) -> float:
    x = x[np.isfinite(x)]
    if x.size < 2:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))


def _bandpass_noise(cp: NDArray[np.complex64], fl: NDArray[np.bool_]) -> tuple[float, float]:
    """Channel-to-channel amplitude scatter and phase noise (deg) of one antenna's B."""
    amps, phases = [], []
    for feed in range(cp.shape[-1]):
        b = np.where(fl[:, feed], np.nan, cp[:, feed])
        if np.isfinite(b).sum() < 3:
            continue
        amps.append(_robust_std(np.diff(np.abs(b))) / math.sqrt(2.0))
        dphi = np.angle(b[1:] * np.conj(b[:-1]))
        phases.append(math.degrees(_robust_std(dphi)) / math.sqrt(2.0))
    if not amps:
        return math.nan, math.nan
    return float(np.mean(amps)), float(np.mean(phases))


def _antenna_qa(name: str, bp: Solutions, gn: Solutions) -> AntennaQa:
    rb, rg = bp.rows_of(name), gn.rows_of(name)
    b_flag = float(bp.flag[rb].mean()) if rb.size else 1.0
    g_flag = float(gn.flag[rg].mean()) if rg.size else 1.0
    scatter, noise = (
        _bandpass_noise(bp.cparam[rb[0]], bp.flag[rb[0]]) if rb.size else (math.nan, math.nan)
    )
    g = np.where(gn.flag[rg], np.nan, gn.cparam[rg]) if rg.size else np.full(1, np.nan)
    with np.errstate(all="ignore"):
        amp = float(np.nanmean(np.abs(g))) if np.isfinite(g).any() else math.nan
        ph = np.angle(g[np.isfinite(g)]) if np.isfinite(g).any() else np.zeros(0)
    phase_rms = 0.0
    if rg.size > 1 and ph.size > 1:
        ref = np.angle(np.nanmean(g, axis=0))
        phase_rms = math.degrees(float(np.sqrt(np.nanmean(np.angle(g * np.exp(-1j * ref)) ** 2))))
    return AntennaQa(
        name=name,
        bandpass_flagged=b_flag,
        gain_flagged=g_flag,
        bandpass_amp_scatter=_finite(scatter),
        bandpass_phase_noise_deg=_finite(noise),
        gain_amplitude=_finite(amp),
        gain_phase_rms_deg=phase_rms,
        outlier=False,
    )


def _mark_outliers(ants: list[AntennaQa], n_mad: float) -> list[AntennaQa]:
    amps = np.array([math.nan if a.gain_amplitude is None else a.gain_amplitude for a in ants])
    good = np.isfinite(amps)
    if good.sum() < 3:
        return ants
    med = float(np.median(amps[good]))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(amps[good] - med)))
    if sigma <= 0:
        return ants
    return [
        a.model_copy(update={"outlier": bool(np.isfinite(x) and abs(x - med) > n_mad * sigma)})
        for a, x in zip(ants, amps, strict=True)
    ]


def _flagged(sol: Solutions, names: list[str]) -> float:
    rows = np.concatenate([sol.rows_of(n) for n in names]) if names else np.zeros(0, int)
    return float(sol.flag[rows].mean()) if rows.size else 1.0


def _snr(sol: Solutions, names: list[str]) -> float:
    rows = np.concatenate([sol.rows_of(n) for n in names]) if names else np.zeros(0, int)
    good = ~sol.flag[rows]
    return float(np.median(sol.snr[rows][good])) if good.any() else 0.0


def _verdict(r: dict[str, float], ants: list[AntennaQa], th: QaThresholds) -> tuple[list, list]:  # type: ignore[type-arg]
    problems, warnings = [], []
    if r["bandpass_flagged"] > th.max_bandpass_flagged:
        problems.append(
            f"bandpass flagged {r['bandpass_flagged']:.1%} > {th.max_bandpass_flagged:.0%}"
        )
    elif r["bandpass_flagged"] > th.warn_bandpass_flagged:
        warnings.append(f"bandpass flagged {r['bandpass_flagged']:.1%}")
    if r["gain_flagged"] > th.max_gain_flagged:
        problems.append(f"gains flagged {r['gain_flagged']:.1%} > {th.max_gain_flagged:.0%}")
    for table in ("bandpass", "gain"):
        snr = r[f"{table}_snr_median"]
        if snr < th.min_snr:
            problems.append(f"{table} median SNR {snr:.1f} < {th.min_snr}")
        elif snr < th.warn_snr:
            warnings.append(f"{table} median SNR {snr:.1f} < {th.warn_snr}")
    if r["n_antennas_solved"] < th.min_antennas:
        problems.append(f"{r['n_antennas_solved']:.0f} antennas solved < {th.min_antennas}")
    n_out = sum(a.outlier for a in ants)
    if ants and n_out / len(ants) > th.max_outlier_fraction:
        problems.append(f"{n_out} gain-amplitude outliers of {len(ants)} antennas")
    elif n_out:
        warnings.append(f"gain-amplitude outliers: {', '.join(a.name for a in ants if a.outlier)}")
    if math.isfinite(r["phase_noise_deg_median"]) and (
        r["phase_noise_deg_median"] > th.max_phase_noise_deg
    ):
        problems.append(
            f"bandpass phase noise {r['phase_noise_deg_median']:.1f} deg > "
            f"{th.max_phase_noise_deg} deg"
        )
    return problems, warnings


def assess_tables(
    bandpass: Path, gain: Path, data_antennas: list[str], thresholds: QaThresholds
) -> QaReport:
    """QA of a bandpass + gain set over the antennas with data (see module docstring)."""
    bp, gn = read_solutions(bandpass), read_solutions(gain)
    ants = _mark_outliers([_antenna_qa(n, bp, gn) for n in data_antennas], thresholds.outlier_mad)
    solved = [a for a in ants if a.bandpass_flagged < 1.0 and a.gain_flagged < 1.0]
    noise = [a.bandpass_phase_noise_deg for a in ants if a.bandpass_phase_noise_deg is not None]
    refs = {
        int(r)
        for sol in (bp, gn)
        for r, f in zip(sol.refant, sol.flag.all(axis=(1, 2)), strict=True)
        if not f
    }
    metrics = {
        "bandpass_flagged": _flagged(bp, data_antennas),
        "gain_flagged": _flagged(gn, data_antennas),
        "bandpass_snr_median": _snr(bp, data_antennas),
        "gain_snr_median": _snr(gn, data_antennas),
        "n_antennas_solved": float(len(solved)),
        "phase_noise_deg_median": float(np.median(noise)) if noise else math.nan,
    }
    problems, warnings = _verdict(metrics, ants, thresholds)
    return QaReport(
        passed=not problems,
        problems=tuple(problems),
        warnings=tuple(warnings),
        bandpass_flagged=metrics["bandpass_flagged"],
        gain_flagged=metrics["gain_flagged"],
        bandpass_snr_median=metrics["bandpass_snr_median"],
        gain_snr_median=metrics["gain_snr_median"],
        n_antennas_data=len(data_antennas),
        n_antennas_solved=len(solved),
        outliers=tuple(a.name for a in ants if a.outlier),
        phase_noise_deg_median=_finite(metrics["phase_noise_deg_median"]),
        refant_used=tuple(bp.names[r] for r in sorted(refs) if 0 <= r < len(bp.names)),
        antennas=tuple(ants),
    )
