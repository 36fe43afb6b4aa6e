"""WSClean backend: the command built as data, the version check, the output files.

Rules (feasibility §4 and §7 item 9):

* the MS must have one phase centre (WSClean 3.1 mis-images a multi-field drift MS);
* ``-reorder`` always and never ``-no-reorder``: without reordering WSClean 3.1
  silently adds a MODEL_DATA column (1.37 GB at full size) to the MS, even with
  ``-no-update-model-required``; the reordered copies go to a temporary directory
  inside the stage's work directory and are deleted with it;
* ``-mgain`` is always given (WSClean's default 1.0 means no major cycles);
* ``-no-update-model-required``: the MS is read only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from dsa_stream.exceptions import EnvironmentSetupError, ImagingError
from dsa_stream.imaging.options import ImagingOptions
from dsa_stream.toolrun import ToolCommand

#: Oldest WSClean whose options we use (-auto-mask, -nmiter, -abs-mem, -use-wgridder).
MIN_VERSION = (3, 0)
_VERSION_RE = re.compile(r"WSClean version (\d+)\.(\d+)(?:\.(\d+))?")


def _fmt(value: float) -> str:
    """A number as WSClean reads it (no exponent surprises, no trailing zeros)."""
    text = f"{value:.10g}"
    return text


def build_wsclean_cmd(
    ms: Path,
    prefix: Path,
    options: ImagingOptions,
    *,
    temp_dir: Path,
    log_path: Path | None = None,
    executable: str | None = None,
) -> ToolCommand:
    """The WSClean command that images ``ms`` into ``<prefix>-*.fits``.

    Args:
        ms: Measurement Set (one phase centre).
        prefix: Output prefix (``-name``).
        options: Imaging options.
        temp_dir: Directory for the reordered data (``-temp-dir``).
        log_path: File receiving WSClean's output.
        executable: Program to run (default ``options.wsclean_executable``).

    Returns:
        The command, with the options' timeout.
    """
    o = options
    argv: list[str] = [executable or o.wsclean_executable]
    argv += ["-name", str(prefix)]
    argv += ["-size", str(o.size_px), str(o.size_px), "-scale", f"{_fmt(o.cell_arcsec)}asec"]
    if o.weighting == "briggs":
        argv += ["-weight", "briggs", _fmt(o.robust)]
    else:
        argv += ["-weight", o.weighting]
    argv += ["-pol", o.pol.lower()]
    if o.data_column != "auto":  # WSClean's own default: CORRECTED_DATA if present, else DATA
        argv += ["-data-column", o.data_column]
    argv += ["-niter", str(o.niter), "-gain", _fmt(o.gain), "-mgain", _fmt(o.mgain)]
    if o.niter == 0:  # no deconvolution: WSClean writes no PSF unless asked
        argv += ["-make-psf"]
    argv += ["-nmiter", str(o.max_major_cycles)]
    if o.threshold_jy > 0:
        argv += ["-threshold", _fmt(o.threshold_jy)]
    if o.auto_threshold_sigma is not None:
        argv += ["-auto-threshold", _fmt(o.auto_threshold_sigma)]
    if o.auto_mask_sigma is not None:
        argv += ["-auto-mask", _fmt(o.auto_mask_sigma)]
    if o.uv_min_lambda is not None:
        argv += ["-minuv-l", _fmt(o.uv_min_lambda)]
    if o.uv_max_lambda is not None:
        argv += ["-maxuv-l", _fmt(o.uv_max_lambda)]
    if o.channels_out > 1:
        argv += ["-channels-out", str(o.channels_out), "-join-channels"]
    if o.wsclean_gridder == "wgridder":
        argv += ["-use-wgridder"]
    if o.threads is not None:
        argv += ["-j", str(o.threads)]
    if o.memory_gb is not None:
        argv += ["-abs-mem", _fmt(o.memory_gb)]
    argv += ["-reorder", "-temp-dir", str(temp_dir), "-no-update-model-required", "-no-dirty"]
    argv += ["-log-time", str(ms)]
    if "-no-reorder" in argv:  # pragma: no cover - guarded by construction
        raise ImagingError("refusing -no-reorder: it adds MODEL_DATA to the MS")
    return ToolCommand(
        argv=tuple(argv),
        timeout_s=o.timeout_s,
        cwd=temp_dir,
        log_path=log_path,
        label="wsclean",
    )


def output_paths(prefix: Path, options: ImagingOptions) -> dict[str, Path]:
    """WSClean's output files for ``prefix``: image, residual, model, psf (MFS when joined).

    Without deconvolution (``niter = 0``) WSClean writes the dirty image as ``-image``
    and no residual or model: the residual is then the image, and there is no model.
    """
    tag = "-MFS" if options.channels_out > 1 else ""
    kinds = ("image", "residual", "model", "psf") if options.niter > 0 else ("image", "psf")
    out = {kind: prefix.parent / f"{prefix.name}{tag}-{kind}.fits" for kind in kinds}
    if options.niter == 0:
        out["residual"] = out["image"]
    return out


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from ``wsclean -version`` output, or None."""
    m = _VERSION_RE.search(text)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def check_wsclean(executable: str = "wsclean", timeout_s: float = 30.0) -> str:
    """The WSClean version string, after checking it is installed and supported.

    Raises:
        EnvironmentSetupError: WSClean is missing, does not run, or is older than
            :data:`MIN_VERSION`.
    """
    path = shutil.which(executable)
    if path is None:
        raise EnvironmentSetupError(
            f"WSClean not found ({executable!r} is not on PATH): install the Debian package "
            "'wsclean' (>= 3.0), set image.wsclean_executable, or use --backend tclean"
        )
    try:
        proc = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentSetupError(f"{path} -version failed: {exc}") from exc
    version = parse_version(proc.stdout + proc.stderr)
    if version is None:
        raise EnvironmentSetupError(f"{path} did not report a WSClean version")
    if version[:2] < MIN_VERSION:
        have = ".".join(map(str, version))
        need = ".".join(map(str, MIN_VERSION))
        raise EnvironmentSetupError(f"WSClean {have} at {path} is too old; {need} or newer needed")
    return ".".join(map(str, version))
