"""PNG plots of a solved table set (matplotlib, Agg backend, no display needed).

* ``<set>_bandpass_amp.png`` / ``<set>_bandpass_phase.png``: one panel per antenna,
  |B| and arg(B) (deg) against frequency, both feeds, flagged channels omitted;
* ``<set>_gains.png``: |G| and arg(G) (deg) per antenna and feed (mean over solution
  times), the reference antenna marked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dsa_stream import naming
from dsa_stream.calibration.qa import Solutions, read_solutions

logger = logging.getLogger(__name__)

FEED_STYLE = (("X", "tab:blue"), ("Y", "tab:orange"))


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _bandpass_figure(sol: Solutions, antennas: Sequence[str], quantity: str, out: Path) -> Path:
    plt = _pyplot()
    n = max(1, len(antennas))
    ncol = min(10, math.ceil(math.sqrt(n)))
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(2.0 * ncol, 1.6 * nrow), sharex=True, sharey=True, squeeze=False
    )
    from matplotlib.ticker import MaxNLocator

    f_mhz = sol.freqs_hz / 1e6
    for ax, name in zip(axes.flat, antennas, strict=False):
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.yaxis.set_major_locator(MaxNLocator(3))
        rows = sol.rows_of(name)
        for feed, (label, colour) in enumerate(FEED_STYLE[: sol.cparam.shape[-1]]):
            if not rows.size:
                continue
            b = np.where(sol.flag[rows[0], :, feed], np.nan, sol.cparam[rows[0], :, feed])
            y = np.abs(b) if quantity == "amp" else np.degrees(np.angle(b))
            ax.plot(f_mhz, y, ".", ms=1.5, color=colour, label=label)
        ax.set_title(name, fontsize=7, pad=2)
        ax.tick_params(labelsize=5)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    what = "|B|" if quantity == "amp" else "arg B (deg)"
    fig.suptitle(f"{sol.path.name}: bandpass {what} vs frequency (MHz)", fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.06, top=0.92, wspace=0.15, hspace=0.35)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _gains_figure(sol: Solutions, antennas: Sequence[str], refant: str | None, out: Path) -> Path:
    plt = _pyplot()
    fig, (ax_a, ax_p) = plt.subplots(2, 1, figsize=(max(6.0, 0.12 * len(antennas) + 2), 5))
    x = np.arange(len(antennas))
    for feed, (label, colour) in enumerate(FEED_STYLE[: sol.cparam.shape[-1]]):
        g = np.full(len(antennas), np.nan, dtype=np.complex128)
        for i, name in enumerate(antennas):
            rows = sol.rows_of(name)
            vals = sol.cparam[rows, 0, feed][~sol.flag[rows, 0, feed]] if rows.size else []
            if len(vals):
                g[i] = np.mean(vals)
        ax_a.plot(x, np.abs(g), "o", ms=3, color=colour, label=f"feed {label}")
        ax_p.plot(x, np.degrees(np.angle(g)), "o", ms=3, color=colour)
    if refant in antennas:
        for ax in (ax_a, ax_p):
            ax.axvline(antennas.index(refant), color="grey", lw=0.8, ls=":")
    ax_a.set_ylabel("|G|")
    ax_p.set_ylabel("arg G (deg)")
    ax_p.set_xticks(x)
    ax_p.set_xticklabels(antennas, rotation=90, fontsize=5)
    ax_a.set_xticks(x)
    ax_a.set_xticklabels([])
    ax_a.legend(fontsize=7)
    ax_a.set_title(f"{sol.path.name}: gains per antenna (reference {refant})", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.12, top=0.93, hspace=0.1)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_table_set(
    set_name: str,
    bandpass: Path,
    gain: Path,
    antennas: Sequence[str],
    refant: str | None,
    out_dir: Path,
) -> tuple[Path, ...]:
    """Write the three PNGs of a table set into ``out_dir``; return their paths."""
    bp, gn = read_solutions(bandpass), read_solutions(gain)
    names = list(antennas)
    paths = (
        _bandpass_figure(
            bp, names, "amp", out_dir / naming.calplot_filename(set_name, "bandpass_amp")
        ),
        _bandpass_figure(
            bp, names, "phase", out_dir / naming.calplot_filename(set_name, "bandpass_phase")
        ),
        _gains_figure(gn, names, refant, out_dir / naming.calplot_filename(set_name, "gains")),
    )
    logger.info("calibration plots: %s", ", ".join(p.name for p in paths))
    return paths
