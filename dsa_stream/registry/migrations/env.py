"""Alembic environment of the registry (run programmatically by dsa_stream.registry.migrate).

The caller passes an open connection inside a transaction through
``config.attributes["connection"]``; the whole upgrade then commits or rolls
back as one unit. On SQLite that transaction is ``BEGIN IMMEDIATE`` (the write
lock serialises concurrent upgraders); on PostgreSQL a transaction-scoped
advisory lock does the same. With the command-line ``alembic`` (authoring
revisions) the URL comes from ``-x url=...``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from dsa_stream.registry.db import make_engine
from dsa_stream.registry.migrate import MIGRATION_LOCK_KEY, compare_type
from dsa_stream.registry.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=compare_type,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database with -x url=... (see alembic.ini)")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=context.get_x_argument(as_dictionary=True).get("url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_online()
