"""Column types shared by the registry models.

:class:`UTCDateTime` stores every instant as UTC and hands back timezone-aware
``datetime`` objects on both dialects:

* PostgreSQL: ``TIMESTAMP WITH TIME ZONE`` (native ordering and arithmetic);
* SQLite: fixed-width ISO-8601 text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (27 characters).
  Because the width is fixed and the zone is always ``Z``, text order is time
  order, so ``ORDER BY`` and ``<`` comparisons in SQL are correct, and the values
  stay readable in the ``sqlite3`` shell.

Naive datetimes are refused on the way in: a naive value is ambiguous, and
guessing its zone is how wall-clock and observation times get mixed up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

#: Width of the SQLite text form.
SQLITE_TIMESTAMP_WIDTH = 27


def format_utc(value: datetime) -> str:
    """The fixed-width text form of an aware datetime (``YYYY-MM-DDTHH:MM:SS.ffffffZ``)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: registry times must be timezone-aware")
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T"
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}Z"
    )


def parse_utc(text: str) -> datetime:
    """Inverse of :func:`format_utc` (also accepts other ISO-8601 forms with a zone)."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware datetime converted to UTC; naive values are refused."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: registry times must be timezone-aware")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant, stored portably (see the module docstring)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Text on SQLite, ``timestamptz`` elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(SQLITE_TIMESTAMP_WIDTH))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Python -> database."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if dialect.name == "sqlite":
            return format_utc(value)
        return as_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Database -> Python (always aware UTC)."""
        if value is None:
            return None
        if isinstance(value, str):
            return parse_utc(value)
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        raise TypeError(f"unexpected timestamp value {value!r}")
