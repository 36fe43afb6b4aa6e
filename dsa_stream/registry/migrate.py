"""Schema migrations of the registry, run programmatically (no alembic.ini at a repo root).

``dsa-stream db upgrade`` / ``db current``, ``dsa-stream init`` and the daemon's
start-up all call :func:`upgrade`. The migration scripts ship inside the package
(``dsa_stream/registry/migrations``). An upgrade runs in one transaction: on
SQLite the ``BEGIN IMMEDIATE`` of the write engine serialises concurrent
upgraders and makes the DDL transactional; on PostgreSQL a transaction-scoped
advisory lock does the same.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from dsa_stream.config import Settings
from dsa_stream.exceptions import RegistryError
from dsa_stream.registry.db import ensure_sqlite_parent, make_engine, redact, sqlite_path
from dsa_stream.registry.types import UTCDateTime

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
#: pg_advisory_xact_lock key held while migrating (arbitrary constant, "dsamigr").
MIGRATION_LOCK_KEY = 0x6473616D69677200


class SchemaStatus(BaseModel):
    """Where a registry database stands against the migrations shipped with this code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        """True when the database is at the newest revision."""
        return self.current == self.head


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RegistryError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision a database is at (None for an empty database)."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise RegistryError(f"cannot read the registry at {redact(engine.url)}: {exc}") from exc


def schema_status(engine: Engine) -> SchemaStatus:
    """Current and newest revision of a database."""
    return SchemaStatus(
        url=redact(engine.url), current=current_revision(engine), head=head_revision()
    )


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate a database to ``revision`` (default: the newest); idempotent.

    Returns:
        The revision the database is at afterwards.

    Raises:
        RegistryError: if the database cannot be reached or a migration fails
            (the database is left at its previous revision).
    """
    ensure_sqlite_parent(engine.url)
    before = current_revision(engine)
    cfg = alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except SQLAlchemyError as exc:
        raise RegistryError(f"registry migration failed on {redact(engine.url)}: {exc}") from exc
    after = current_revision(engine)
    if after != before:
        logger.info("registry %s migrated %s -> %s", redact(engine.url), before, after)
    return after or ""


def upgrade_registry(settings: Settings) -> str:
    """Migrate the registry of a site to the newest revision (what the daemon runs at start).

    Returns:
        The revision the database is at afterwards.
    """
    engine = make_engine(settings.registry_url(), settings.registry)
    try:
        return upgrade(engine)
    finally:
        engine.dispose()


def require_current_schema(engine: Engine) -> None:
    """Refuse to work on a database that is missing or not at the newest revision.

    Raises:
        RegistryError: with the command that fixes it.
    """
    path = sqlite_path(engine.url)
    if path is not None and not path.exists():
        raise RegistryError(
            f"registry database {path} does not exist: run `dsa-stream db upgrade` "
            "(or `dsa-stream init`)"
        )
    status = schema_status(engine)
    if not status.up_to_date:
        raise RegistryError(
            f"registry {status.url} is at revision {status.current or '(empty)'}, this code "
            f"needs {status.head}: run `dsa-stream db upgrade`"
        )


def compare_type(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_type: Any,
    metadata_type: Any,
) -> bool | None:
    """Alembic type comparison that understands :class:`UTCDateTime` (text on SQLite).

    Returns False (same type) for a UTCDateTime column stored as it should be on the
    dialect, None (let Alembic decide) otherwise.
    """
    if isinstance(metadata_type, UTCDateTime):
        impl = metadata_type.load_dialect_impl(context.dialect)
        return bool(impl._type_affinity is not inspected_type._type_affinity)
    return None
