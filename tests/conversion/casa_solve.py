"""Run in a child interpreter (casatools never shares a process with python-casacore):
solve B and G on a calibrator MS with casatasks, then applycal them to a target MS."""

from __future__ import annotations

import os
from pathlib import Path


def solve_and_apply(cal_ms: str, target_ms: str, prefix: str, flux_jy: float) -> dict[str, str]:
    from dsa_stream import casa_env

    ct = casa_env.casatasks()
    os.chdir(Path(prefix).parent)  # casatasks write their logs into the CWD
    g0, b, g = f"{prefix}.G0", f"{prefix}.B", f"{prefix}.G"
    ct.setjy(vis=cal_ms, standard="manual", fluxdensity=[flux_jy, 0, 0, 0], usescratch=False)
    ct.gaincal(vis=cal_ms, caltable=g0, gaintype="G", calmode="p", solint="inf", minsnr=0)
    ct.bandpass(
        vis=cal_ms, caltable=b, solint="inf", combine="scan", gaintable=[g0], solnorm=True, minsnr=0
    )
    ct.gaincal(
        vis=cal_ms, caltable=g, gaintype="G", calmode="ap", solint="60s", gaintable=[b], minsnr=0
    )
    ct.applycal(
        vis=target_ms,
        gaintable=[b, g],
        interp=["nearest", "nearest"],
        calwt=False,
        flagbackup=False,
    )
    return {"B": b, "G": g}
