"""dsa-stream: streaming continuum imaging for drift-scan radio interferometers (DSA-110 first)."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
