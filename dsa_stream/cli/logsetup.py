"""Logging configuration: done once, here, for every command-line entry point."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from dsa_stream.logctx import ContextFilter, JsonFormatter, TextFormatter, file_handler

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def effective_level(base: str, verbose: int, quiet: int) -> int:
    """Level after ``-v`` (more detail) and ``-q`` (less) adjust the configured one."""
    idx = _LEVELS.index(base.upper()) - verbose + quiet
    return getattr(logging, _LEVELS[max(0, min(len(_LEVELS) - 1, idx))])


def configure_logging(
    level: int, fmt: str = "text", logfile: Path | None = None, stream: object = None
) -> None:
    """Install handlers on the root logger (stderr, and optionally a file)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    console = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    console.setFormatter(formatter)
    console.addFilter(ContextFilter())
    root.addHandler(console)
    if logfile is not None:
        root.addHandler(file_handler(logfile, fmt))
    root.setLevel(level)
    # Third-party chatter stays at WARNING unless we are debugging.
    for noisy in ("matplotlib", "h5py", "urllib3", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)
