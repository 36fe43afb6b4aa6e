"""The imaging stage: one Measurement Set -> image, residual, beam, PB-corrected image, QA, PNG."""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from dsa_stream import __version__, naming
from dsa_stream.exceptions import ImagingError
from dsa_stream.imaging import fitsio, headers
from dsa_stream.imaging.msinfo import (
    MsInfo,
    calibration_records,
    read_ms_info,
    resolve_data_column,
)
from dsa_stream.imaging.options import (
    CalibrationRecord,
    ExpectedSource,
    ImageProducts,
    ImagingOptions,
    ImagingResult,
    QaReport,
    RestoringBeam,
)
from dsa_stream.imaging.primary_beam import (
    beam_image,
    drift_extent_deg,
    effective_frequency,
    pb_corrected,
)
from dsa_stream.imaging.qa import QaInputs, assess
from dsa_stream.imaging.restore import fit_psf_beam, restore
from dsa_stream.imaging.weights import weight_sums
from dsa_stream.versions import distribution_version, software_versions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendRun:
    """What an imager produced (FITS in the work directory) and how it was called."""

    fits: dict[str, Path]
    """image, residual, psf and, after deconvolution, model (FITS in the work directory)."""
    command: tuple[str, ...]
    version: str
    seconds: float


def product_paths(prefix: Path, preview: bool) -> ImageProducts:
    """The product files of ``prefix`` (``<dir>/<stem>``; naming in :mod:`dsa_stream.naming`)."""

    def path(kind: str) -> Path:
        name = naming.format_image_product(naming.ImageProductName(prefix.name, kind))
        return prefix.parent / name

    return ImageProducts(
        image=path("image"),
        residual=path("residual"),
        pb=path("pb"),
        pbcor=path("pbcor"),
        preview=path("preview") if preview else None,
        summary=path("summary"),
    )


def _check_ms(info: MsInfo, options: ImagingOptions) -> None:
    if options.backend == "wsclean" and info.n_fields > 1:
        raise ImagingError(
            f"{info.path} has {info.n_fields} fields: WSClean 3.1 needs one phase centre "
            "(convert in midpoint mode, or use --backend tclean)"
        )


def _run_wsclean(
    info: MsInfo, work: Path, options: ImagingOptions, log: Path, cancel: threading.Event | None
) -> BackendRun:
    from dsa_stream.imaging.wsclean import build_wsclean_cmd, check_wsclean, output_paths
    from dsa_stream.toolrun import run_tool

    version = check_wsclean(options.wsclean_executable)
    prefix = work / "wsclean"
    cmd = build_wsclean_cmd(info.path, prefix, options, temp_dir=work / "tmp", log_path=log)
    before = set(info.columns)
    result = run_tool(cmd, cancel=cancel)
    after = set(read_ms_info(info.path).columns)
    if after != before:
        raise ImagingError(f"WSClean changed the MS columns: added {sorted(after - before)}")
    return BackendRun(output_paths(prefix, options), cmd.argv, version, result.duration_s)


def _run_tclean(
    info: MsInfo, work: Path, options: ImagingOptions, log: Path, cancel: threading.Event | None
) -> BackendRun:
    from dsa_stream.imaging.tclean import run_tclean, tclean_call, tclean_params

    phasecenter = ""
    if info.n_fields > 1:
        ra, dec = info.pointing_mid_deg()
        phasecenter = f"ICRS {ra:.8f}deg {dec:.8f}deg"
    params = tclean_params(info.path, work / "tclean", options, phasecenter=phasecenter)
    fits_out = {k: work / f"tclean-{k}.fits" for k in ("image", "residual", "model", "psf")}
    out = run_tclean(params, fits_out, options, log_path=log, cancel=cancel)
    version = f"CASA {out.get('casa_version', '?')}"
    return BackendRun(fits_out, tclean_call(params), version, float(out.get("seconds", 0.0)))


def _ref_frequency(raw: fits.Header, info: MsInfo) -> float:
    for axis in range(1, int(raw.get("NAXIS", 0)) + 1):
        if str(raw.get(f"CTYPE{axis}", "")).startswith("FREQ"):
            return float(raw[f"CRVAL{axis}"])
    return float(0.5 * (info.freqs_hz.min() + info.freqs_hz.max()))


def _restoring_beam(options: ImagingOptions, psf: np.ndarray) -> RestoringBeam:
    if options.restoring_beam is not None:
        bmaj, bmin, bpa = options.restoring_beam
        return RestoringBeam(bmaj_arcsec=bmaj, bmin_arcsec=bmin, bpa_deg=bpa)
    return fit_psf_beam(psf, options.cell_arcsec)


def _software(backend: str, version: str) -> dict[str, str | None]:
    out = software_versions(include_external=False)
    for name in ("scipy", "python-casacore", "matplotlib"):
        out[name] = distribution_version(name)
    if backend == "wsclean":
        out["wsclean"] = version
    return out


def image_ms(
    ms: str | Path,
    out_prefix: str | Path,
    options: ImagingOptions | None = None,
    *,
    expected: Sequence[ExpectedSource] = (),
    calibration: Sequence[CalibrationRecord] = (),
    group_key: str | None = None,
    config_hash: str | None = None,
    cancel: threading.Event | None = None,
) -> ImagingResult:
    """Image one Measurement Set and write the FITS products, the QA and a PNG preview.

    Args:
        ms: Measurement Set (one spectral window; one field for WSClean).
        out_prefix: ``<dir>/<stem>``; products are ``<stem>.image.fits``, ``.residual.fits``,
            ``.pb.fits``, ``.pbcor.fits``, ``.image.png``, ``.image.json`` and the imager's
            log ``.imaging.log`` in ``<dir>``.
        options: Imaging options (defaults: :class:`ImagingOptions`).
        expected: Sources the image should show (catalogue or simulation truth) for QA.
        calibration: Tables applied to the data outside our converter (their solution
            times are read from the tables); those applied on the fly by the converter are
            found in the MS.
        group_key: Observation group key (default: from the MS).
        config_hash: Hash of the dsa-stream configuration, recorded in the products.
        cancel: When set, the imager is killed (lost lease, shutdown).

    Returns:
        The products, QA and provenance; QA failures are recorded, not raised.

    Raises:
        ImagingError: unusable MS, imager output missing or inconsistent.
        EnvironmentSetupError: WSClean missing or too old.
        ToolError: the imager failed, timed out or was cancelled.
    """
    options = options or ImagingOptions()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    ms_path = Path(ms).absolute()
    prefix = Path(out_prefix).absolute()
    products = product_paths(prefix, options.preview)
    log = prefix.parent / naming.format_image_product(naming.ImageProductName(prefix.name, "log"))
    info = read_ms_info(ms_path)
    _check_ms(info, options)
    options = options.model_copy(
        update={"data_column": resolve_data_column(info, options.data_column)}
    )
    cal = calibration_records(info, tuple(calibration))
    key = group_key or info.group_key()
    timings["inspect"] = time.perf_counter() - t_start
    work = prefix.parent / f".{prefix.name}.imaging-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        runner = _run_wsclean if options.backend == "wsclean" else _run_tclean
        run = runner(info, work, options, log, cancel)
        timings["imager"] = time.perf_counter() - t0
        result = _products(
            info, run, products, options, expected, cal, key, config_hash, timings, t_start
        )
    finally:
        if options.keep_backend_files:
            kept = prefix.parent / f"{prefix.name}.imager-files"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.rmtree(work / "tmp", ignore_errors=True)
            work.rename(kept)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _products(
    info: MsInfo,
    run: BackendRun,
    products: ImageProducts,
    options: ImagingOptions,
    expected: Sequence[ExpectedSource],
    cal: tuple[CalibrationRecord, ...],
    key: str,
    config_hash: str | None,
    timings: dict[str, float],
    t_start: float,
) -> ImagingResult:
    residual, raw = fitsio.read_backend_image(run.fits["residual"])
    if "model" in run.fits:
        model, _ = fitsio.read_backend_image(run.fits["model"])
    else:  # no deconvolution
        model = np.zeros_like(residual)
    psf, _ = fitsio.read_backend_image(run.fits["psf"])
    base = fitsio.celestial_header(raw, options.cell_arcsec)
    wcs = fitsio.wcs_of(base)
    beam = _restoring_beam(options, psf)
    image = restore(model, residual, beam, options.cell_arcsec)
    ref_freq = _ref_frequency(raw, info)
    t0 = time.perf_counter()
    weights = weight_sums(info.path, info.times_mjd, info.freqs_hz, options)
    eff_freq = effective_frequency(info.freqs_hz, weights)
    timings["weights"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pb = beam_image(wcs, image.shape, info.pointing_deg, info.freqs_hz, weights)
    pbcor = pb_corrected(image, pb, options.pb_cutoff)
    timings["primary_beam"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    qa = assess(
        QaInputs(
            image=image,
            residual=residual,
            model=model,
            psf=psf,
            pb=pb,
            wcs=wcs,
            beam=beam,
            cell_arcsec=options.cell_arcsec,
            ref_freq_hz=ref_freq,
            pb_cutoff=options.pb_cutoff,
        ),
        expected,
        options.qa,
    )
    timings["qa"] = time.perf_counter() - t0
    software = _software(options.backend, run.version)
    meta = headers.HeaderMeta(
        info=info,
        options=options,
        group_key=key,
        backend_version=run.version,
        command=run.command,
        beam=beam,
        ref_freq_hz=ref_freq,
        eff_freq_hz=eff_freq,
        drift_deg=drift_extent_deg(info.pointing_deg),
        calibration=cal,
        software=software,
        config_hash=config_hash,
        qa=qa,
        written_utc=datetime.now(UTC),  # bookkeeping: the FITS DATE card
    )
    t0 = time.perf_counter()
    for kind, data in (("image", image), ("residual", residual), ("pb", pb), ("pbcor", pbcor)):
        header = headers.product_header(base, meta, kind)
        fitsio.write_fits_atomic(getattr(products, kind), data, header)
    timings["write"] = time.perf_counter() - t0
    if products.preview is not None:
        t0 = time.perf_counter()
        _preview(products.preview, image, wcs, pb, key, qa, options, expected)
        timings["preview"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    result = ImagingResult(
        ms_path=info.path,
        backend=options.backend,
        backend_version=run.version,
        products=products,
        group_key=key,
        time_start_mjd=info.time_start_mjd,
        time_end_mjd=info.time_end_mjd,
        ref_freq_hz=ref_freq,
        eff_freq_hz=eff_freq,
        phase_centre_deg=(float(base["CRVAL1"]), float(base["CRVAL2"])),
        pointing_mid_deg=info.pointing_mid_deg(),
        shape=(int(image.shape[0]), int(image.shape[1])),
        cell_arcsec=options.cell_arcsec,
        beam=beam,
        qa=qa,
        calibration=cal,
        command=run.command,
        options_hash=options.content_hash(),
        config_hash=config_hash,
        software=software,
        warnings=info.warnings,
        timings_s=timings,
    )
    _write_summary(products.summary, result, options)
    logger.info(
        "imaged %s with %s in %.1f s: rms %.3g Jy/beam, peak %.3g, DR %.0f, QA %s",
        info.path.name,
        options.backend,
        timings["total"],
        qa.rms_jy,
        qa.peak_jy,
        qa.dynamic_range,
        "pass" if qa.passed else "FAIL " + ",".join(qa.failures()),
    )
    return result


def _preview(
    path: Path,
    image: np.ndarray,
    wcs: Any,
    pb: np.ndarray,
    key: str,
    qa: QaReport,
    options: ImagingOptions,
    expected: Sequence[ExpectedSource],
) -> None:
    from dsa_stream.imaging.preview import render_preview

    render_preview(
        path,
        image,
        wcs,
        title=f"DSA-110 {key} ({options.backend})",
        qa=qa,
        cell_arcsec=options.cell_arcsec,
        pb=pb,
        pb_cutoff=options.pb_cutoff,
        expected=expected,
    )


def _write_summary(path: Path, result: ImagingResult, options: ImagingOptions) -> None:
    doc = {
        "format": "dsa-stream-image-summary",
        "version": 1,
        "dsa_stream": __version__,
        "options": options.model_dump(mode="json"),
        "result": result.model_dump(mode="json"),
    }
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=True, default=str)
    fitsio.write_bytes_atomic(path, text.encode())
