"""Imaging stage: one Measurement Set -> FITS image, primary beam, PB-corrected image, QA, PNG.

Entry points (imported lazily: importing this package loads neither python-casacore
nor casatools; :mod:`dsa_stream.imaging.casa_child` runs tclean in a child process and
must never share a process with python-casacore):

* :func:`image_ms` - image an MS with WSClean (default) or tclean and write the products;
* :class:`ImagingOptions` / :class:`ImagingResult` - frozen options and result;
* :class:`ExpectedSource` - a source QA should find (catalogue or simulation truth);
* :func:`build_wsclean_cmd` / :func:`tclean_params` - the imager calls, as data.

What the mosaic stage must know
-------------------------------

* Products of a stem (the group key by default) in one directory:
  ``<stem>.image.fits`` (restored, Jy/beam, not PB corrected), ``<stem>.residual.fits``,
  ``<stem>.pb.fits`` (the drift- and band-averaged Airy beam, dimensionless),
  ``<stem>.pbcor.fits`` (image / pb where pb >= PBCUT, NaN elsewhere),
  ``<stem>.image.png``, ``<stem>.image.json`` (the :class:`ImagingResult`, written last:
  its presence means the set is complete) and ``<stem>.imaging.log``. Names:
  :func:`dsa_stream.naming.format_image_product`.
* All FITS products share one 2-D grid: ``RA---SIN``/``DEC--SIN`` about the phase
  centre, RADESYS ICRS, CRVAL1 in [0, 360), no FREQ/STOKES axes (use the header as
  is with ``astropy.wcs.WCS``/``reproject``). Primary HDU, float32.
* The beam image is the right weight for a linear mosaic: the image is the sky times
  pb (pb is 1 only for a source on the pointing centre all group long); PB-weighted
  coadd ``sum(pb * image * w) / sum(pb**2 * w)`` with ``w = 1 / QARMS**2``.
* Keywords: FREQREF (MFS reference frequency), FREQEFF, BMAJ/BMIN/BPA, DATE-OBS/MJD-OBS
  /MJD-END, DSAGROUP, PNTRA/PNTDEC (mid pointing), PBCUT, QAPASS/QARMS, CAL* and SW*
  (full list: :data:`dsa_stream.imaging.fitsio.KEYWORDS`).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "image_ms": "dsa_stream.imaging.api",
    "product_paths": "dsa_stream.imaging.api",
    "ImagingOptions": "dsa_stream.imaging.options",
    "ImagingResult": "dsa_stream.imaging.options",
    "QaOptions": "dsa_stream.imaging.options",
    "QaReport": "dsa_stream.imaging.options",
    "ExpectedSource": "dsa_stream.imaging.options",
    "CalibrationRecord": "dsa_stream.imaging.options",
    "ImageProducts": "dsa_stream.imaging.options",
    "build_wsclean_cmd": "dsa_stream.imaging.wsclean",
    "tclean_params": "dsa_stream.imaging.tclean",
    "load_expected_csv": "dsa_stream.imaging.expected",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
