"""``dsa-stream reconcile [--fix]``: registry vs disk, and the repairs."""

from __future__ import annotations

import sys
from typing import Any

import click

from dsa_stream.cli.context import emit, emit_table, get_ctx, json_option

#: Exit status when discrepancies were found and not repaired.
EXIT_DISCREPANCIES = 3


@click.command("reconcile")
@click.option("--fix", is_flag=True, help="Repair what can be repaired (nothing is deleted).")
@click.option("--quick", is_flag=True, help="Existence only: do not re-checksum the products.")
@json_option
def reconcile_cmd(fix: bool, quick: bool) -> None:
    """List (and with --fix repair) disagreements between the registry and the disk.

    Exit status 0 when everything agrees (or all was repaired), 3 when discrepancies
    remain.
    """
    from dsa_stream.pipeline.context import PipelineContext
    from dsa_stream.pipeline.reconcile import reconcile, report_json
    from dsa_stream.registry import JobStore
    from dsa_stream.registry.migrate import require_current_schema

    settings = get_ctx().settings()
    store = JobStore.from_settings(settings)
    try:
        require_current_schema(store.engine)
        report = reconcile(PipelineContext.create(settings, store), fix=fix, verify=not quick)
    finally:
        store.close()
    emit(report_json(report), _render)
    if report.discrepancies and not all(d.fixed for d in report.discrepancies):
        sys.exit(EXIT_DISCREPANCIES)


def _render(doc: dict[str, Any]) -> None:
    items = doc["discrepancies"]
    if not items:
        click.echo(f"registry and disk agree ({doc['checked_products']} products checked)")
        return
    emit_table(
        f"{len(items)} discrepancies ({doc['checked_products']} products checked)",
        ("kind", "subject", "detail", "fix", "fixed"),
        (
            (d["kind"], d["subject"], d["detail"], d["fix"], "yes" if d["fixed"] else "no")
            for d in items
        ),
    )
