"""``dsa-stream init``, ``dsa-stream config show`` and ``dsa-stream version``."""

from __future__ import annotations

from pathlib import Path

import click

from dsa_stream.cli.context import emit, emit_json, emit_mapping, get_ctx, json_option
from dsa_stream.site import init_site
from dsa_stream.versions import software_versions


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Rewrite an existing configuration file.")
@json_option
def init_cmd(directory: Path, force: bool) -> None:
    """Create a ready site in DIRECTORY: configuration and data directories."""
    result = init_site(directory, force=force)
    data = {
        "root": str(result.root),
        "config": str(result.config_path),
        "config_written": result.created_config,
        "registry": result.settings.registry_url(),
        "directories": {k: str(v) for k, v in result.directories.items()},
    }

    def render(d: dict[str, object]) -> None:
        state = "written" if d["config_written"] else "kept (use --force to rewrite)"
        click.echo(f"site:     {d['root']}")
        click.echo(f"config:   {d['config']} ({state})")
        click.echo(f"registry: {d['registry']}")
        for name, path in result.directories.items():
            click.echo(f"{name + ':':<11}{path}")
        click.echo(f"next:     dsa-stream --config {d['config']} config show")

    emit(data, render)


@click.group("config")
def config_group() -> None:
    """Inspect the resolved configuration."""


@config_group.command("show")
@json_option
def config_show_cmd() -> None:
    """Print the resolved configuration (defaults < YAML < environment < flags)."""
    ctx = get_ctx()
    settings = ctx.settings()
    if ctx.json_output:
        doc = settings.model_dump(mode="json")
        doc["_resolved"] = {
            "config_file": str(ctx.config_path) if ctx.config_path else None,
            "registry_url": settings.registry_url(),
            "config_hash": settings.config_hash(),
        }
        emit_json(doc)
        return
    source = str(ctx.config_path) if ctx.config_path else "(built-in defaults)"
    click.echo(f"# configuration file: {source}")
    click.echo(f"# registry: {settings.registry_url()}")
    click.echo(f"# config hash: {settings.config_hash()}")
    click.echo(settings.to_yaml(), nl=False)


@click.command("version")
@json_option
def version_cmd() -> None:
    """Print the versions of dsa-stream and the software it depends on."""
    emit_mapping("software versions", software_versions())
