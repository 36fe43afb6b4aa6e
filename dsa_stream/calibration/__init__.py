"""Calibration: the bundled calibrator catalogue, transit finding, solving and applying.

This package starts with :mod:`dsa_stream.calibration.catalog`, the calibrator
catalogue shipped as package data (Perley & Butler 2017 flux-scale sources plus bright
VLA calibrators over Dec 0-90 deg).
"""

from __future__ import annotations
