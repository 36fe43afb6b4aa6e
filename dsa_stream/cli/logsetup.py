"""Logging configuration: done once, here, for every command-line entry point."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Record attributes that structured logs carry when a caller sets them via ``extra=``.
CONTEXT_FIELDS = ("group_key", "job_id", "stage", "worker_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message and context fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines with UTC times and any context fields appended."""

    converter = staticmethod(lambda secs: datetime.fromtimestamp(secs, UTC).timetuple())  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__("%(asctime)sZ %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as text."""
        text = super().format(record)
        ctx = [f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if getattr(record, n, None)]
        return f"{text} [{' '.join(ctx)}]" if ctx else text


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
    root.addHandler(console)
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(logfile)
        fh.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        root.addHandler(fh)
    root.setLevel(level)
    # Third-party chatter stays at WARNING unless we are debugging.
    for noisy in ("matplotlib", "h5py", "urllib3", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)
