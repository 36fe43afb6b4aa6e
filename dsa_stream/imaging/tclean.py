"""tclean backend: the call built as data (a parameter dict), run in a child interpreter.

casatools/casatasks never share a process with python-casacore, so the parent only
builds :func:`tclean_params` and hands it to :func:`run_tclean`, which calls
:func:`dsa_stream.imaging.casa_child.tclean_and_export` through
:func:`dsa_stream.toolrun.call_in_subprocess` (timeout, process-group kill, log
capture). This module and ``casa_child`` import neither casacore nor casatools at
module level.

Mapping of :class:`~dsa_stream.imaging.options.ImagingOptions` (docs/imaging.md):
``mgain`` -> ``minpsffraction = maxpsffraction = 1 - mgain`` (each major cycle cleans
the peak residual down to that fraction, as WSClean's ``-mgain`` does);
``auto_mask_sigma`` (else ``auto_threshold_sigma``) -> ``nsigma`` (:func:`tclean_nsigma`;
no mask, the whole image is cleaned to that level); ``max_major_cycles`` -> ``nmajor``;
``threads`` -> ``OMP_NUM_THREADS`` of the child; ``pblimit`` is negative so that
tclean never blanks the image with its own primary beam (ours is applied later).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from dsa_stream.exceptions import ImagingError
from dsa_stream.imaging.options import ImagingOptions
from dsa_stream.toolrun import call_in_subprocess

#: CASA image suffixes exported to FITS, by our kind name.
EXPORTS = {"image": ".image", "residual": ".residual", "model": ".model", "psf": ".psf"}
#: Every image tclean may write for one run (removed before a run, and after export).
CASA_SUFFIXES = (
    ".image",
    ".residual",
    ".model",
    ".psf",
    ".pb",
    ".sumwt",
    ".weight",
    ".mask",
    ".image.pbcor",
)


def uvrange(options: ImagingOptions) -> str:
    """The tclean ``uvrange`` for the options' uv limits ('' when unrestricted)."""
    lo, hi = options.uv_min_lambda, options.uv_max_lambda
    if lo is None and hi is None:
        return ""
    if lo is None:
        return f"<{hi:.10g}lambda"
    if hi is None:
        return f">{lo:.10g}lambda"
    return f"{lo:.10g}~{hi:.10g}lambda"


def tclean_nsigma(options: ImagingOptions) -> float:
    """The tclean ``nsigma``: the auto-mask level when one is set, else the auto-threshold.

    WSClean cleans freely down to ``auto_mask_sigma`` and then, only inside the mask of
    what it found, down to ``auto_threshold_sigma``. tclean has no such mask here, and
    cleaning the whole image down to ~1 sigma spends tens of thousands of iterations on
    noise (and lowers the residual rms artificially), so it stops at the mask level.
    """
    sigma = options.auto_mask_sigma or options.auto_threshold_sigma
    return float(sigma or 0.0)


def tclean_params(
    ms: Path, imagename: Path, options: ImagingOptions, *, phasecenter: str = ""
) -> dict[str, Any]:
    """The keyword arguments of ``casatasks.tclean`` for these options.

    Args:
        ms: Measurement Set.
        imagename: Prefix of the CASA images.
        options: Imaging options (``channels_out`` must be 1).
        phasecenter: ``''`` for the MS's field centre, else e.g. ``'ICRS 253.2deg 54.6deg'``
            (for an MS with one field per integration).
    """
    o = options
    if o.channels_out != 1:
        raise ImagingError("the tclean backend images one MFS channel (channels_out = 1)")
    psf_fraction = 1.0 - o.mgain
    return {
        "vis": str(ms),
        "imagename": str(imagename),
        "datacolumn": "data" if o.data_column == "DATA" else "corrected",
        "field": "",
        "uvrange": uvrange(o),
        "imsize": [o.size_px, o.size_px],
        "cell": f"{o.cell_arcsec:.10g}arcsec",
        "phasecenter": phasecenter,
        "stokes": o.pol,
        "specmode": "mfs",
        "gridder": o.tclean_gridder,
        "wprojplanes": o.tclean_wprojplanes if o.tclean_gridder != "standard" else 1,
        "pblimit": -1e-4,
        "deconvolver": o.tclean_deconvolver,
        "weighting": o.weighting,
        "robust": o.robust,
        "niter": o.niter,
        "gain": o.gain,
        "threshold": f"{o.threshold_jy:.10g}Jy",
        "nsigma": tclean_nsigma(o),
        "cycleniter": -1,
        "cyclefactor": 1.0,
        "minpsffraction": psf_fraction,
        "maxpsffraction": psf_fraction,
        "nmajor": o.max_major_cycles,
        "usemask": "user",
        "mask": "",
        "restoration": True,
        "pbcor": False,
        "savemodel": "none",
        "interactive": False,
        "restart": False,
        "calcres": True,
        "calcpsf": True,
        "parallel": False,
    }


def tclean_call(params: dict[str, Any]) -> tuple[str, ...]:
    """The call as ``key=value`` strings (for logs and FITS HISTORY)."""
    return ("tclean",) + tuple(f"{k}={v!r}" for k, v in params.items())


def _append_casa_log(casa_log: Path, log_path: Path | None) -> None:
    """Append the CASA log of the run to our imaging log (and remove it)."""
    if not casa_log.exists():
        return
    if log_path is not None:
        with open(log_path, "a", encoding="utf-8") as out:
            out.write(f"--- CASA log ({casa_log.name}) ---\n")
            out.write(casa_log.read_text(encoding="utf-8", errors="replace"))
    casa_log.unlink()


def run_tclean(
    params: dict[str, Any],
    fits_out: dict[str, Path],
    options: ImagingOptions,
    *,
    log_path: Path | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Run tclean and export the images to FITS in a child interpreter.

    Args:
        params: From :func:`tclean_params`.
        fits_out: Our kind (``image``, ``residual``, ``model``, ``psf``) -> FITS path.
        options: Imaging options (timeout, threads).
        log_path: File receiving the child's output.
        cancel: Set to kill the child.

    Returns:
        ``{"casa_version", "seconds", "summary"}`` from the child.
    """
    env = {}
    if options.threads is not None:
        env["OMP_NUM_THREADS"] = str(options.threads)
    casa_log = Path(f"{params['imagename']}.casa.log")
    payload = {
        "params": params,
        "exports": {EXPORTS[k]: str(v) for k, v in fits_out.items()},
        "remove": list(CASA_SUFFIXES),
        "casa_log": str(casa_log),
    }
    try:
        result = call_in_subprocess(
            "dsa_stream.imaging.casa_child:tclean_and_export",
            payload,
            timeout_s=options.timeout_s,
            log_path=log_path,
            env=env,
            label="tclean",
            cancel=cancel,
        )
    finally:
        _append_casa_log(casa_log, log_path)
    if not isinstance(result, dict):
        raise ImagingError(f"tclean child returned {type(result).__name__}, not a dict")
    return result
