"""Structured log context: group key, job id, stage and worker on every log record.

:func:`log_context` sets the fields for the current thread or task (context
variables), and :class:`ContextFilter` copies them onto each record, where the
formatters of :mod:`dsa_stream.cli.logsetup` print them. Library code only sets
context; handlers are configured by the entry points.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The fields a record may carry.
FIELDS = ("group_key", "job_id", "stage", "worker_id")

_context: ContextVar[dict[str, Any] | None] = ContextVar("dsa_stream_log_context", default=None)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (a subset of :data:`FIELDS`) to every record logged inside the block."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {sorted(unknown)}")
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    """The fields set by the enclosing :func:`log_context` blocks."""
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copy the current log context onto each record (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the context fields that the record does not already carry."""
        for key, value in (_context.get() or {}).items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


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
        for name in FIELDS:
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
        ctx = [f"{n}={getattr(record, n)}" for n in FIELDS if getattr(record, n, None)]
        return f"{text} [{' '.join(ctx)}]" if ctx else text


def file_handler(path: Path, fmt: str = "text") -> logging.Handler:
    """A handler appending formatted, context-carrying records to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    return handler
