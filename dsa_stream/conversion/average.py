"""Flag-aware channel averaging of a block of visibilities."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def average_channels(
    data: NDArray[np.complex64],
    flags: NDArray[np.bool_],
    nsamples: NDArray[np.float32],
    factor: int,
) -> tuple[NDArray[np.complex64], NDArray[np.bool_], NDArray[np.float32]]:
    """Average ``factor`` adjacent channels, ignoring flagged ones.

    An output channel is the ``nsamples``-weighted mean of its unflagged inputs and is
    flagged only when all of them are (it then holds their plain mean). Its ``nsamples``
    is the sum of the unflagged inputs' nsamples divided by ``factor``, so with the
    channel width multiplied by ``factor`` the radiometer weight (width x nsamples)
    counts exactly the unflagged data.

    Args:
        data: (rows, channels, pols) visibilities.
        flags: Same shape, True = flagged.
        nsamples: Same shape, samples per visibility.
        factor: Channels per output channel; must divide the channel count.

    Returns:
        Averaged (data, flags, nsamples), channels divided by ``factor``.
    """
    nrow, nchan, npol = data.shape
    if factor == 1:
        return data, flags, nsamples
    if nchan % factor:
        raise ValueError(f"{factor} does not divide {nchan} channels")
    shape = (nrow, nchan // factor, factor, npol)
    w = np.where(flags, np.float32(0.0), nsamples).reshape(shape)
    wsum = w.sum(axis=2)
    dsum = (data.reshape(shape) * w).sum(axis=2)
    out_flags = wsum <= 0.0
    plain = data.reshape(shape).mean(axis=2)
    safe = np.where(out_flags, np.float32(1.0), wsum)
    out = np.where(out_flags, plain, dsum / safe).astype(np.complex64)
    return out, out_flags, (wsum / np.float32(factor)).astype(np.float32)


def average_frequencies(
    freqs_hz: NDArray[np.float64], width_hz: float, factor: int
) -> tuple[NDArray[np.float64], float]:
    """Centres and width of the averaged channels."""
    if factor == 1:
        return freqs_hz, width_hz
    return freqs_hz.reshape(-1, factor).mean(axis=1), width_hz * factor
