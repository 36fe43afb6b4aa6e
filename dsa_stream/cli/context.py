"""Shared state and output helpers of the ``dsa-stream`` commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from dsa_stream.config import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliContext:
    """What the top-level options decided, plus the settings (loaded on first use)."""

    config_path: Path | None = None
    verbose: int = 0
    quiet: int = 0
    json_output: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None

    def settings(self) -> Settings:
        """The resolved settings (defaults < YAML < environment < flags)."""
        if self._settings is None:
            self._settings = load_settings(self.config_path, self.overrides)
        return self._settings

    def override(self, dotted: str, value: Any) -> None:
        """Record a command-line override (``"paths.incoming"``); None means not given."""
        if value is None:
            return
        node = self.overrides
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        self._settings = None


def get_ctx() -> CliContext:
    """The :class:`CliContext` of the running command."""
    ctx = click.get_current_context()
    obj = ctx.find_object(CliContext)
    if obj is None:  # a command invoked on its own (tests)
        obj = ctx.ensure_object(CliContext)
    return obj


def json_option(func: F) -> F:
    """Add ``--json`` to a command whose output is data."""

    def _set(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            ctx.ensure_object(CliContext).json_output = True
        return value

    return click.option(
        "--json",
        "json_flag",
        is_flag=True,
        expose_value=False,
        callback=_set,
        help="Print machine-readable JSON instead of a table.",
    )(func)


def console() -> Console:
    """A rich console on stdout (no colour codes when stdout is not a terminal)."""
    return Console(highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")


def emit_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a table to stdout."""
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console().print(table)


def emit(data: Any, render: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON when ``--json`` was given, else with ``render``."""
    if get_ctx().json_output:
        emit_json(data)
    else:
        render(data)


def emit_mapping(title: str, data: Mapping[str, Any]) -> None:
    """Print a flat mapping as a two-column table, or JSON with ``--json``."""
    emit(dict(data), lambda d: emit_table(title, ("key", "value"), d.items()))
