"""``dsa-stream db upgrade|current``: the registry schema (Alembic migrations)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy import Engine

from dsa_stream.cli.context import emit, get_ctx, json_option
from dsa_stream.registry.db import make_engine, redact, sqlite_path
from dsa_stream.registry.migrate import current_revision, head_revision, upgrade


@contextmanager
def _site_engine() -> Iterator[Engine]:
    settings = get_ctx().settings()
    engine = make_engine(settings.registry_url(), settings.registry)
    try:
        yield engine
    finally:
        engine.dispose()


def _current(engine: Engine) -> str | None:
    path = sqlite_path(engine.url)
    if path is not None and not path.exists():
        return None  # do not create an empty file just to look at it
    return current_revision(engine)


@click.group("db")
def db_group() -> None:
    """Registry database schema: upgrade it, or show its revision."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@json_option
def db_upgrade_cmd(revision: str) -> None:
    """Create or migrate the registry database (idempotent; run by `init` and the daemon)."""
    with _site_engine() as engine:
        before = _current(engine)
        after = upgrade(engine, revision)
        data = {"url": redact(engine.url), "from": before, "to": after, "head": head_revision()}

    def render(d: dict[str, Any]) -> None:
        if d["from"] == d["to"]:
            click.echo(f"registry {d['url']}: already at revision {d['to']}")
        else:
            click.echo(f"registry {d['url']}: {d['from'] or '(empty)'} -> {d['to']}")

    emit(data, render)


@db_group.command("current")
@json_option
def db_current_cmd() -> None:
    """Show the registry's schema revision and whether it is up to date."""
    with _site_engine() as engine:
        current = _current(engine)
        data = {
            "url": redact(engine.url),
            "current": current,
            "head": head_revision(),
            "up_to_date": current == head_revision(),
        }

    def render(d: dict[str, Any]) -> None:
        state = "up to date" if d["up_to_date"] else "run `dsa-stream db upgrade`"
        click.echo(f"registry: {d['url']}")
        click.echo(f"revision: {d['current'] or '(empty)'} (head {d['head']}; {state})")

    emit(data, render)
