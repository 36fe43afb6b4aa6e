"""The exceptions of dsa-stream: one base class and one subclass per stage.

The worker catches :class:`DsaStreamError` to mark a job failed and lets anything
else crash loudly. :class:`ShutdownRequested` derives from ``BaseException`` so
that ``except Exception`` blocks never swallow a shutdown.
"""

from __future__ import annotations


class DsaStreamError(Exception):
    """Base class of every error this package raises on purpose.

    Attributes:
        permanent: True when retrying cannot help (corrupt input, bad
            configuration); the job store then sends the job to ``dead`` at once.
    """

    permanent: bool = False


class ConfigError(DsaStreamError):
    """The configuration is invalid or cannot be read."""

    permanent = True


class NamingError(DsaStreamError):
    """A file or directory name does not follow the naming scheme."""

    permanent = True


class EnvironmentSetupError(DsaStreamError):
    """The runtime environment (CASA data, external tools) is not usable."""

    permanent = True


class SimulationError(DsaStreamError):
    """The simulator was given options it cannot honour."""

    permanent = True


class InputFileError(DsaStreamError):
    """An input (UVH5) file is unreadable, truncated or inconsistent."""


class RegistryError(DsaStreamError):
    """The registry (database) refused or failed an operation."""


class LeaseLostError(RegistryError):
    """The worker no longer holds the lease of the job it is running."""


class WatcherError(DsaStreamError):
    """The file watcher or the reconcile scan failed."""


class ConversionError(DsaStreamError):
    """Turning a subband group into a Measurement Set failed."""


class CalibrationError(DsaStreamError):
    """Solving or applying calibration failed."""


class ImagingError(DsaStreamError):
    """Imaging (WSClean or tclean) failed."""


class MosaicError(DsaStreamError):
    """Planning or building a mosaic failed."""


class ProductError(DsaStreamError):
    """Registering, finalizing or publishing a product failed."""


class ToolError(DsaStreamError):
    """An external tool (CASA task, WSClean) failed or timed out."""


class ToolTimeoutError(ToolError):
    """An external tool ran past its time limit and was killed."""


class ToolCancelledError(ToolError):
    """An external tool was killed on request (lost lease, cancel, shutdown)."""


class ShutdownRequested(BaseException):  # noqa: N818 - control flow, not an error
    """Raised inside the worker when a shutdown signal arrives."""
