"""Engines for the registry: SQLite (embedded, default) and PostgreSQL (several hosts).

SQLite follows reliability §2.2: the driver's implicit BEGIN is switched off and
every transaction of a *write* engine starts with ``BEGIN IMMEDIATE`` (the write
lock is taken up front, where ``busy_timeout`` applies, so no read-then-write
transaction can fail with an instant ``SQLITE_BUSY``); WAL, ``synchronous=FULL``
and foreign keys are set per connection. Read-only engines (CLI, dashboards)
use a deferred ``BEGIN`` and never take the write lock. Keep the file on local
disk: WAL does not work over a network filesystem.

PostgreSQL gets the session timeouts of reliability §2.5 from the configuration
(``statement_timeout``, ``lock_timeout``, ``idle_in_transaction_session_timeout``,
libpq ``connect_timeout``), TCP keepalives, ``pool_pre_ping`` and UTC sessions.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from dsa_stream.config import RegistryConfig
from dsa_stream.exceptions import RegistryError
from dsa_stream.registry.types import as_utc

logger = logging.getLogger(__name__)

SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def normalize_url(url: str | URL) -> URL:
    """Parse a registry URL; ``postgresql://`` and ``postgres://`` mean psycopg 3.

    Raises:
        RegistryError: for a malformed URL or an unsupported database.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise RegistryError(f"invalid registry URL {url!r}: {exc}") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend not in SUPPORTED_BACKENDS:
        raise RegistryError(
            f"unsupported registry database {backend!r} (use sqlite:///path or postgresql://...)"
        )
    if backend == "postgresql":
        parsed = parsed.set(drivername=f"postgresql+{driver or 'psycopg'}")
    return parsed


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL (None for other databases or in-memory)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(
    url: str | URL,
    config: RegistryConfig | None = None,
    *,
    write: bool = True,
    pool_size: int = 5,
) -> Engine:
    """Create an engine for the registry with the settings of this module's docstring.

    Args:
        url: SQLAlchemy URL (``sqlite:///abs/path`` or ``postgresql+psycopg://...``).
        config: Timeouts; defaults of :class:`~dsa_stream.config.RegistryConfig` if None.
        write: False for tools that only read (SQLite: deferred BEGIN; PostgreSQL:
            read-only sessions).
        pool_size: Connections kept open per process.

    Raises:
        RegistryError: for an unsupported or malformed URL.
    """
    cfg = config or RegistryConfig()
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, cfg, write=write, pool_size=pool_size)
    return _postgres_engine(parsed, cfg, write=write, pool_size=pool_size)


def _sqlite_engine(url: URL, cfg: RegistryConfig, *, write: bool, pool_size: int) -> Engine:
    busy_ms = int(cfg.busy_timeout_s * 1000)
    engine = create_engine(
        url,
        connect_args={"timeout": cfg.busy_timeout_s},
        pool_size=pool_size,
        pool_pre_ping=False,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # no implicit BEGIN from the sqlite3 module
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    begin_sql = "BEGIN IMMEDIATE" if write else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin_sql)

    return engine


def _postgres_engine(url: URL, cfg: RegistryConfig, *, write: bool, pool_size: int) -> Engine:
    options = [
        f"-c statement_timeout={int(cfg.statement_timeout_s * 1000)}",
        f"-c lock_timeout={int(cfg.lock_timeout_s * 1000)}",
        f"-c idle_in_transaction_session_timeout={int(cfg.idle_in_transaction_timeout_s * 1000)}",
        "-c timezone=UTC",
    ]
    if not write:
        options.append("-c default_transaction_read_only=on")
    connect_args: dict[str, Any] = {
        "connect_timeout": max(1, math.ceil(cfg.connect_timeout_s)),
        "options": " ".join(options),
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "application_name": "dsa-stream",
    }
    return create_engine(
        url,
        connect_args=connect_args,
        pool_pre_ping=True,
        pool_size=pool_size,
        pool_timeout=cfg.connect_timeout_s,
    )


def is_postgres(conn: Connection | Engine) -> bool:
    """True when ``conn`` talks to PostgreSQL."""
    return conn.dialect.name == "postgresql"


def db_now(conn: Connection) -> datetime:
    """The current time as the registry sees it (aware UTC).

    PostgreSQL: the server's ``clock_timestamp()``, so that clock skew between
    hosts cannot shorten leases. SQLite: this host's clock (one host by design).
    """
    if is_postgres(conn):
        value = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        return as_utc(value)
    return datetime.now(UTC)


def insert(conn: Connection, table: Table) -> Any:
    """A dialect-specific INSERT (it supports ``on_conflict_do_nothing``)."""
    if is_postgres(conn):
        return postgresql.insert(table)
    return sqlite.insert(table)


def ensure_sqlite_parent(url: str | URL) -> None:
    """Create the directory of a SQLite database file if it is missing."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def redact(url: str | URL) -> str:
    """The URL with any password hidden (for logs and CLI output)."""
    return normalize_url(url).render_as_string(hide_password=True)
