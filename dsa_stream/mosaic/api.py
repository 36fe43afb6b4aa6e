"""``build_mosaic``: coadd the member images of a window, check the result, write it.

Outputs, next to each other (``<prefix>`` e.g. ``staging/.../mosaic_<window>_v<n>``):

* ``<prefix>.fits`` - the mosaic, Jy/beam, 2D, NaN outside coverage, with provenance
  and QA keywords (docs/mosaic.md lists them);
* ``<prefix>_noise.fits`` - expected noise 1/sqrt(sum_i w_i B_i^2), Jy/beam, same grid
  (the weight map is its inverse square);
* ``<prefix>.png`` - preview;
* ``<prefix>_qa.json`` - the :class:`MosaicResult`.

Each file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa_stream import instrument, naming
from dsa_stream.exceptions import MosaicError
from dsa_stream.mosaic import fitsio
from dsa_stream.mosaic.coadd import Coadd, TileUse, coadd_tiles
from dsa_stream.mosaic.options import ExpectedSource, MosaicOptions, MosaicTile
from dsa_stream.mosaic.preview import write_preview
from dsa_stream.mosaic.qa import assess_mosaic
from dsa_stream.mosaic.results import MosaicQA, MosaicResult, TileSummary
from dsa_stream.versions import software_versions

logger = logging.getLogger(__name__)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def _beam(uses: list[TileUse]) -> tuple[float | None, float | None, float | None, float | None]:
    """Median BMAJ, BMIN, BPA (deg) and the largest relative beam-area deviation."""
    bmaj = _median([u.info.bmaj_deg for u in uses])
    bmin = _median([u.info.bmin_deg for u in uses])
    bpa = _median([u.info.bpa_deg for u in uses])
    if bmaj is None or bmin is None:
        return bmaj, bmin, bpa, None
    areas = [
        u.info.bmaj_deg * u.info.bmin_deg
        for u in uses
        if u.info.bmaj_deg is not None and u.info.bmin_deg is not None
    ]
    spread = max(abs(a / (bmaj * bmin) - 1.0) for a in areas)
    return bmaj, bmin, bpa, float(spread)


def _tile_summary(u: TileUse) -> TileSummary:
    t = u.tile
    return TileSummary(
        group_key=t.group_key,
        image_id=t.image_id,
        image_path=t.image_path,
        beam_path=t.beam_path,
        obs_start=t.obs_start,
        obs_end=t.obs_end,
        rms_jy=u.rms_jy,
        rms_source=u.rms_source,
        weight=u.weight,
        bmaj_deg=u.info.bmaj_deg,
        bmin_deg=u.info.bmin_deg,
        bpa_deg=u.info.bpa_deg,
        pixels_used=u.pixels_used,
        resampler=u.resampler,
    )


def output_paths(prefix: Path) -> dict[str, Path]:
    """The files of a mosaic with this prefix: image, noise, preview, qa."""
    return {
        kind: prefix.with_name(prefix.name + suffix)
        for kind, suffix in naming.MOSAIC_FILE_SUFFIXES.items()
    }


def _put(h: fits.Header, key: str, value: str, comment: str) -> None:
    """Set a string card, dropping the comment when value and comment exceed one card."""
    if len(value) + len(comment) > 62:
        h[key] = value  # long values continue on CONTINUE cards
    else:
        h[key] = (value, comment)


def _qa_cards(h: fits.Header, qa: MosaicQA) -> None:
    h["QAPASS"] = (qa.passed, "mosaic QA passed")
    h["QANOISE"] = (qa.noise_measured_jy, "[Jy/beam] robust rms where deepest")
    h["QANOIEXP"] = (qa.noise_expected_min_jy, "[Jy/beam] expected noise where deepest")
    h["QANOIRAT"] = (qa.noise_ratio, "robust rms of mosaic/noise map")
    h["QAPEAK"] = (qa.peak_jy, "[Jy/beam] peak")
    h["QADR"] = (qa.dynamic_range, "peak / QANOISE")
    h["QACOVER"] = (qa.coverage_fraction, "footprint fraction above the cutoff")
    h["QANSRC"] = (qa.n_sources_checked, "expected sources checked")
    h["QANFOUND"] = (qa.n_sources_found, "expected sources found")
    if qa.flux_ratio_median is not None:
        h["QAFLUX"] = (qa.flux_ratio_median, "median measured/expected flux")
    if qa.offset_beams_median is not None:
        h["QAPOS"] = (qa.offset_beams_median, "[beam] median position offset")
    for i, line in enumerate(qa.failures, start=1):
        _put(h, f"QAFAIL{i}", line, "failed QA check")


def _members_cards(h: fits.Header, tiles: Sequence[TileSummary]) -> None:
    for i, t in enumerate(tiles, start=1):
        h[f"MGRP{i:03d}"] = (t.group_key, f"member {i} group key")
        _put(h, f"MIMG{i:03d}", t.image_id, f"member {i} image identity")
        h[f"MRMS{i:03d}"] = (t.rms_jy, f"[Jy/beam] member {i} rms ({t.rms_source})")
        h.add_history(f"member {i}: group {t.group_key} image {t.image_id}")


def _telescope(coadd: Coadd, options: MosaicOptions) -> str:
    """The configured TELESCOP, else the members' common one, else the instrument's."""
    if options.coadd.telescope:
        return options.coadd.telescope
    names = {str(u.info.header.get("TELESCOP", "")).strip() for u in coadd.uses}
    if len(names) == 1 and "" not in names:
        return names.pop()
    return instrument.TELESCOPE_NAME


def _wcs_header(coadd: Coadd) -> fits.Header:
    h = coadd.grid.wcs.to_header()
    h.remove("MJDREF", ignore_missing=True)  # astropy's default 0: no time axis here
    return h


def mosaic_header(coadd: Coadd, result: MosaicResult, options: MosaicOptions) -> fits.Header:
    """Header of the mosaic FITS: WCS, beam, times, members, provenance, QA."""
    h = _wcs_header(coadd)
    h["BUNIT"] = "Jy/beam"
    h["BTYPE"] = "Intensity"
    h["TELESCOP"] = _telescope(coadd, options)
    h["OBJECT"] = f"mosaic {result.window_key}"
    if result.bmaj_deg is not None and result.bmin_deg is not None:
        h["BMAJ"] = (result.bmaj_deg, "[deg] median restoring beam of the members")
        h["BMIN"] = (result.bmin_deg, "[deg] median restoring beam of the members")
        h["BPA"] = (result.bpa_deg or 0.0, "[deg] median position angle")
        h["BSPREAD"] = (result.beam_spread, "max |member beam area / median - 1|")
    if result.freq_hz is not None:
        h["FREQ"] = (result.freq_hz, "[Hz] median reference frequency of the members")
    h["DATE-OBS"] = (result.obs_start.isoformat(timespec="milliseconds")[:23], "first start")
    h["MJD-OBS"] = (fitsio.mjd(result.obs_start), "[d] first member start")
    h["DATE-END"] = (result.obs_end.isoformat(timespec="milliseconds")[:23], "last end")
    h["MJD-END"] = (fitsio.mjd(result.obs_end), "[d] last member end")
    h["TIMESYS"] = "UTC"
    h["NIMAGES"] = (len(result.tiles), "member images")
    h["WINDOW"] = (result.window_key, "mosaic window key")
    h["WINVER"] = (result.version, "mosaic window version")
    h["WEIGHTNG"] = ("PB/rms^2", "M = sum w B I / sum w B^2, w = 1/rms^2")
    h["PBCUT"] = (options.coadd.sensitivity_cutoff, "NaN where sqrt(sum w B^2) < PBCUT x max")
    kinds = sorted({t.resampler for t in result.tiles})
    h["RESAMPLR"] = ("+".join(kinds), "image resampling (cubic: Catmull-Rom)")
    h["INTERP"] = (options.coadd.interpolation_order, "spline order (resampler spline)")
    if result.config_hash is not None:
        h["CFGHASH"] = (result.config_hash, "dsa-stream configuration hash")
    h["PIPEVER"] = (result.software.get("dsa-stream") or "unknown", "dsa-stream version")
    for name, version in result.software.items():
        h.add_history(f"software {name} {version}")
    _members_cards(h, result.tiles)
    _qa_cards(h, result.qa)
    return h


def noise_header(coadd: Coadd, result: MosaicResult) -> fits.Header:
    """Header of the expected-noise FITS."""
    h = _wcs_header(coadd)
    h["BUNIT"] = "Jy/beam"
    h["BTYPE"] = "Noise"
    h["MAPTYPE"] = ("EXPECTED_NOISE", "1/sqrt(sum_i w_i B_i^2); weight = MAP**-2")
    h["WINDOW"] = result.window_key
    h["WINVER"] = result.version
    h["NIMAGES"] = len(result.tiles)
    return h


def _write_outputs(
    coadd: Coadd, result: MosaicResult, options: MosaicOptions, paths: dict[str, Path]
) -> dict[str, float]:
    t0 = time.perf_counter()
    fitsio.write_fits(paths["image"], coadd.mosaic, mosaic_header(coadd, result, options))
    fitsio.write_fits(paths["noise"], coadd.noise, noise_header(coadd, result))
    t1 = time.perf_counter()
    if options.coadd.preview:
        title = (
            f"mosaic {result.window_key} v{result.version}: {len(result.tiles)} images, "
            f"rms {result.qa.noise_measured_jy * 1e3:.2f} mJy/beam, "
            f"QA {'passed' if result.qa.passed else 'FAILED'}"
        )
        with fitsio.atomic_target(paths["preview"]) as tmp:
            write_preview(
                tmp,
                coadd.mosaic,
                coadd.grid.wcs,
                result.qa.noise_measured_jy,
                title,
                options.coadd.preview_max_px,
            )
    t2 = time.perf_counter()
    return {"write_fits": t1 - t0, "preview": t2 - t1}


def build_mosaic(
    tiles: Sequence[MosaicTile],
    out_prefix: Path,
    options: MosaicOptions | None = None,
    *,
    window_key: str | None = None,
    version: int = 1,
    config_hash: str | None = None,
    expected_sources: Sequence[ExpectedSource] = (),
) -> MosaicResult:
    """Build, check and write the mosaic of a window.

    Args:
        tiles: Member images with their beams, rms and observation times.
        out_prefix: Path prefix of the outputs (the directory is created).
        options: Coadd and QA options (the planner part is not used here).
        window_key: Key of the window (default: the first member's group key).
        version: Window version.
        config_hash: Hash of the resolved configuration, recorded in the header.
        expected_sources: Sources to check flux and position against.

    Returns:
        Paths, grid, beam, per-tile use, QA (failures do not raise: they are recorded
        in the result and the header), software versions and timings.

    Raises:
        MosaicError: unreadable or inconsistent inputs, or nothing to mosaic.
    """
    opts = options or MosaicOptions()
    if not tiles:
        raise MosaicError("no tiles to mosaic")
    t0 = time.perf_counter()
    coadd = coadd_tiles(tiles, opts.coadd)
    bmaj, bmin, bpa, spread = _beam(coadd.uses)
    fwhm = float(np.sqrt(bmaj * bmin)) if bmaj and bmin else None
    t1 = time.perf_counter()
    qa = assess_mosaic(coadd, fwhm, expected_sources, opts.qa)
    t2 = time.perf_counter()
    summaries = tuple(_tile_summary(u) for u in coadd.uses)
    key = window_key or summaries[0].group_key
    paths = output_paths(out_prefix)
    w = coadd.grid.wcs.wcs
    result = MosaicResult(
        window_key=key,
        version=version,
        mosaic_path=paths["image"],
        noise_path=paths["noise"],
        preview_path=paths["preview"] if opts.coadd.preview else None,
        qa_path=paths["qa"],
        shape=coadd.grid.shape,
        crval_deg=(float(w.crval[0]) % 360.0, float(w.crval[1])),
        cdelt_deg=(float(w.cdelt[0]), float(w.cdelt[1])),
        projection=opts.coadd.projection,
        bmaj_deg=bmaj,
        bmin_deg=bmin,
        bpa_deg=bpa,
        beam_spread=spread,
        freq_hz=_median([u.info.freq_hz for u in coadd.uses]),
        obs_start=min(t.obs_start for t in summaries),
        obs_end=max(t.obs_end for t in summaries),
        tiles=summaries,
        qa=qa,
        config_hash=config_hash,
        software=software_versions(include_external=False),
        timings_s={},
    )
    timings = {**coadd.timings_s, "qa": t2 - t1}
    timings.update(_write_outputs(coadd, result, opts, paths))
    timings["total"] = time.perf_counter() - t0
    result = result.model_copy(update={"timings_s": timings})
    fitsio.write_text(paths["qa"], result.model_dump_json(indent=2))
    logger.info(
        "mosaic %s v%d: %d images, %d x %d px, QA %s, %.1f s",
        key,
        version,
        len(summaries),
        coadd.grid.shape[1],
        coadd.grid.shape[0],
        "passed" if qa.passed else "failed",
        timings["total"],
    )
    return result
