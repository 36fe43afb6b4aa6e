"""Facts about the DSA-110 instrument, in one place.

Sources: ``../shared/design/reference-pipelines.md`` §1 (real-file dimensions,
band, site) and the DSA-110 meridian fringe-stopping writer. Every module that
needs a number about the telescope takes it from here.
"""

from __future__ import annotations

import math

import numpy as np

#: Speed of light (m/s).
C_M_S = 299_792_458.0

#: Array centre (the T junction), geodetic WGS84. These are the values of the
#: DSA-110 antenna-position utilities (0.6498455107 rad, -2.0644277991 rad) and of
#: the casadata Observatories row for OVRO_MMA.
SITE_LAT_DEG = math.degrees(0.6498455107238486)
SITE_LON_DEG = math.degrees(-2.064427799136453)
SITE_ALT_M = 1188.0519

#: Name written into our Measurement Sets. CASA's ``OVRO_MMA`` Observatories row
#: is broken (an ITRF type with a height of 1188 m, i.e. a point near the
#: geocentre), so our products never use that name for the observatory.
TELESCOPE_NAME = "DSA_110"
#: What the correlator writes into ``Header/telescope_name``.
CORRELATOR_TELESCOPE_NAME = "OVRO_MMA"

N_SUBBANDS = 16
N_CHAN_PER_SUBBAND = 48
CHANNEL_WIDTH_HZ = 244_140.625
BAND_LOW_HZ = 1311.25e6
BAND_HIGH_HZ = 1498.75e6
N_INTEGRATIONS = 24
INTEGRATION_S = 12.884902000427246
#: Span of one observation (one group of 16 subband files).
OBSERVATION_S = N_INTEGRATIONS * INTEGRATION_S
POLARIZATIONS = (-5, -6)  # XX, YY (AIPS memo 117)
DISH_DIAMETER_M = 4.65
N_STATIONS = 117
#: Stations (1-based) with no data in 2026 (reference-pipelines §1.2).
INACTIVE_STATIONS = (10, 21, 22, 23, *range(52, 68), 117)
#: System equivalent flux density of one dish, Jy (issue 2).
SEFD_JY = 6500.0


def subband_frequencies(subband: int, nchan: int = N_CHAN_PER_SUBBAND) -> np.ndarray:
    """Channel-centre frequencies (Hz) of one subband, in the order the correlator writes them.

    sb00 is the highest subband and channels descend within each subband, as in
    real DSA-110 files. With fewer channels than 48 the subband keeps its edges
    and the channels get proportionally wider.

    Args:
        subband: Subband number, 0..15.
        nchan: Channels per subband.

    Returns:
        Descending channel-centre frequencies, shape ``(nchan,)``.
    """
    if not 0 <= subband < N_SUBBANDS:
        raise ValueError(f"subband must be 0..{N_SUBBANDS - 1}, got {subband}")
    if nchan < 1 or N_CHAN_PER_SUBBAND % nchan:
        raise ValueError(f"channels per subband must divide {N_CHAN_PER_SUBBAND}, got {nchan}")
    width = subband_channel_width(nchan)
    sb_width = N_CHAN_PER_SUBBAND * CHANNEL_WIDTH_HZ
    top = BAND_HIGH_HZ - subband * sb_width
    return top - (np.arange(nchan) + 0.5) * width


def subband_channel_width(nchan: int = N_CHAN_PER_SUBBAND) -> float:
    """Channel width (Hz, positive) for ``nchan`` channels per subband."""
    return CHANNEL_WIDTH_HZ * N_CHAN_PER_SUBBAND / nchan


def thermal_sigma_jy(
    sefd_jy: float = SEFD_JY,
    channel_width_hz: float = CHANNEL_WIDTH_HZ,
    integration_s: float = INTEGRATION_S,
) -> float:
    """Noise per real or imaginary part of one cross-correlation visibility (Jy).

    sigma = SEFD / sqrt(2 * dnu * tau), the radiometer equation for two
    identical dishes and one polarization product.
    """
    return sefd_jy / math.sqrt(2.0 * channel_width_hz * integration_s)
