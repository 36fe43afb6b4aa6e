"""``dsa-stream registry ...``: read-only queries of the registry.

Every listing takes ``--json`` (one JSON array) and shows a table otherwise.
``--since``/``--until`` are observation times (UTC, ISO-8601), never arrival
times. The registry is opened read-only (SQLite: no write lock; PostgreSQL:
read-only sessions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from sqlalchemy import Connection

from dsa_stream.cli.context import emit, emit_table, get_ctx, json_option
from dsa_stream.registry import queries
from dsa_stream.registry.db import db_now, make_engine
from dsa_stream.registry.migrate import require_current_schema
from dsa_stream.registry.records import Record
from dsa_stream.registry.states import FileState, GroupState, JobState, ProductState, WorkerState
from dsa_stream.registry.stats import RegistryStats, registry_stats

F = TypeVar("F", bound=Callable[..., Any])


class ObsTime(click.ParamType):
    """An ISO-8601 time; without a zone it is taken as UTC."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse the value."""
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time (e.g. 2026-01-01T00:05:00)", param, ctx)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _choice(values: type[Any]) -> click.Choice[str]:
    return click.Choice([v.value for v in values])


def window_options(func: F) -> F:
    """``--since``/``--until`` (observation time) and ``--limit``."""
    func = click.option("--limit", type=click.IntRange(1), default=200, show_default=True)(func)
    func = click.option("--until", type=ObsTime(), help="Observation time before (UTC).")(func)
    return click.option("--since", type=ObsTime(), help="Observation time from (UTC).")(func)


@contextmanager
def read_connection() -> Iterator[Connection]:
    """A read-only connection to the site's registry (which must be migrated)."""
    settings = get_ctx().settings()
    engine = make_engine(settings.registry_url(), settings.registry, write=False)
    try:
        require_current_schema(engine)
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _show(rows: Sequence[Record], title: str, columns: dict[str, Callable[[Any], Any]]) -> None:
    def render(_data: Any) -> None:
        emit_table(title, list(columns), ([f(r) for f in columns.values()] for r in rows))

    emit([r.model_dump(mode="json") for r in rows], render)


@click.group("registry")
def registry_group() -> None:
    """Query the registry: groups, files, jobs, workers, products, stats."""


@registry_group.command("groups")
@click.option("--state", type=_choice(GroupState))
@click.option("--group", "group_key", help="One group key.")
@window_options
@json_option
def groups_cmd(state: str | None, group_key: str | None, **window: Any) -> None:
    """Observation groups, newest first."""
    with read_connection() as conn:
        rows = queries.list_groups(conn, state=state, group_key=group_key, **window)
    _show(
        rows,
        "groups",
        {
            "group": lambda r: r.group_key,
            "obs time": lambda r: _ts(r.obs_time),
            "state": lambda r: r.state,
            "stage": lambda r: r.stage,
            "subbands": lambda r: f"{r.n_present}/{r.n_expected}",
            "missing": lambda r: ",".join(map(str, r.missing_subbands or [])),
            "reason": lambda r: r.reason,
        },
    )


#: ``registry files --state rejected``: files recorded as not usable (``rejected_files``).
REJECTED = "rejected"


def _show_rejected(all_versions: bool, limit: int) -> None:
    with read_connection() as conn:
        rows = queries.list_rejected_files(
            conn, state=None if all_versions else REJECTED, limit=limit
        )
    _show(
        rows,
        "rejected files" + (" (every version)" if all_versions else ""),
        {
            "id": lambda r: r.id,
            "path": lambda r: f"{r.root_id}:{r.rel_path}",
            "size": lambda r: r.size,
            "state": lambda r: r.state,
            "rejected at": lambda r: _ts(r.rejected_at),
            "kind": lambda r: "after grace" if r.retryable else "permanent",
            "reason": lambda r: r.reason,
            "resolution": lambda r: r.resolution,
        },
    )


@registry_group.command("files")
@click.option(
    "--state",
    type=click.Choice([*(v.value for v in FileState), REJECTED]),
    help="File state; 'rejected': files on disk recorded as not usable, with the reason.",
)
@click.option("--group", "group_key", help="One group key.")
@click.option(
    "--all-versions",
    is_flag=True,
    help="With --state rejected: also resolved, superseded and removed rejections.",
)
@window_options
@json_option
def files_cmd(state: str | None, group_key: str | None, all_versions: bool, **window: Any) -> None:
    """Input files, newest observation first (``--state rejected``: rejected files)."""
    if state == REJECTED:
        if group_key or window["since"] or window["until"]:
            raise click.UsageError(
                "rejected files have no group or observation time: "
                "--group/--since/--until do not apply"
            )
        _show_rejected(all_versions, window["limit"])
        return
    if all_versions:
        raise click.UsageError("--all-versions applies to --state rejected only")
    with read_connection() as conn:
        rows = queries.list_files(conn, state=state, group_key=group_key, **window)
    _show(
        rows,
        "input files",
        {
            "id": lambda r: r.id,
            "group": lambda r: r.group_key,
            "sb": lambda r: r.subband,
            "path": lambda r: f"{r.root_id}:{r.rel_path}",
            "size": lambda r: r.size,
            "state": lambda r: r.state,
            "reason": lambda r: r.reason,
        },
    )


@registry_group.command("jobs")
@click.option("--state", type=_choice(JobState))
@click.option("--kind", help="Job kind (convert, calibrate, image, mosaic, ...).")
@click.option("--group", "group_key", help="Jobs of one group.")
@window_options
@json_option
def jobs_cmd(state: str | None, kind: str | None, group_key: str | None, **window: Any) -> None:
    """Jobs, newest first (``--since``/``--until`` filter their observation time)."""
    with read_connection() as conn:
        rows = queries.list_jobs(conn, state=state, kind=kind, group_key=group_key, **window)
    _show(
        rows,
        "jobs",
        {
            "id": lambda r: r.id,
            "kind": lambda r: r.kind,
            "state": lambda r: r.state,
            "group": lambda r: r.group_key,
            "obs time": lambda r: _ts(r.order_key),
            "attempt": lambda r: f"{r.attempt}/{r.max_attempts}",
            "progress": lambda r: "" if r.progress is None else f"{r.progress:.0%}",
            "error": lambda r: (r.last_error or "")[:60],
        },
    )


@registry_group.command("workers")
@click.option("--state", type=_choice(WorkerState))
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True)
@json_option
def workers_cmd(state: str | None, limit: int) -> None:
    """Workers: identity, state, heartbeat age and current job."""
    with read_connection() as conn:
        rows = queries.list_workers(conn, now=db_now(conn), state=state, limit=limit)
    _show(
        rows,
        "workers",
        {
            "id": lambda r: r.id[:8],
            "host": lambda r: r.host,
            "pid": lambda r: r.pid,
            "version": lambda r: r.code_version,
            "state": lambda r: r.state + (f" ({r.stop_requested})" if r.stop_requested else ""),
            "heartbeat age s": lambda r: f"{r.heartbeat_age_s:.0f}",
            "job": lambda r: r.current_job_id,
            "reason": lambda r: r.reason,
        },
    )


@registry_group.command("products")
@click.option("--kind", help="Product kind (ms, caltable, image, mosaic, qa).")
@click.option("--state", type=_choice(ProductState))
@click.option("--group", "group_key", help="Products of one group.")
@window_options
@json_option
def products_cmd(kind: str | None, state: str | None, group_key: str | None, **window: Any) -> None:
    """Products, newest observation first."""
    with read_connection() as conn:
        rows = queries.list_products(conn, kind=kind, state=state, group_key=group_key, **window)
    _show(
        rows,
        "products",
        {
            "id": lambda r: r.id,
            "kind": lambda r: r.kind,
            "key": lambda r: f"{r.logical_key} v{r.version}",
            "state": lambda r: r.state,
            "obs start": lambda r: _ts(r.obs_start),
            "path": lambda r: f"{r.root_id}:{r.rel_path}",
            "job": lambda r: r.job_id,
        },
    )


@registry_group.command("lineage")
@click.argument("product")
@click.option("--depth", type=click.IntRange(1, 16), default=8, show_default=True)
@json_option
def lineage_cmd(product: str, depth: int) -> None:
    """What PRODUCT was made from, down to the subband files (and what uses it).

    PRODUCT: a product id, a logical key (``mosaic:<window>``, newest version), a key
    with version (``image:<group>:v2``) or a product path.
    """
    from dsa_stream.registry.lineage import find_product_ref, lineage

    with read_connection() as conn:
        tree = lineage(conn, int(find_product_ref(conn, product).id), max_depth=depth)
    emit(tree, _render_lineage)


def _render_lineage(tree: dict[str, Any]) -> None:
    from rich.tree import Tree

    from dsa_stream.cli.context import console

    def label(n: dict[str, Any]) -> str:
        status = "/".join(s for s in (n["state"], n["qa_status"], n["validation_status"]) if s)
        where = n["published"] or n["path"]
        rel = f"[dim]{n['relation']}[/dim] " if n["relation"] else ""
        return (
            f"{rel}[bold]{n['kind']}[/bold] {n['logical_key']} v{n['version']} ({status}) {where}"
        )

    def add(branch: Any, n: dict[str, Any]) -> None:
        for p in n["parents"]:
            add(branch.add(label(p)), p)
        files = n.get("files") or []
        if files:
            sub = branch.add(f"{len(files)} subband files of group {files[0]['group_key']}")
            for f in files:
                sub.add(f"sb{f['subband']:02d} {f['path']} ({f['size']} B, {f['state']})")

    root = Tree(label(tree))
    add(root, tree)
    console().print(root)
    if tree["used_by"]:
        used = ", ".join(f"{u['kind']} {u['logical_key']} v{u['version']}" for u in tree["used_by"])
        console().print(f"used by: {used}")


@registry_group.command("caltables")
@click.option(
    "--status",
    type=click.Choice(["candidate", "valid", "rejected", "superseded"]),
    help="Only tables with this status (valid: may be applied; rejected: failed QA).",
)
@window_options
@json_option
def caltables_cmd(status: str | None, **window: Any) -> None:
    """Calibration table sets, latest transit first (--since/--until: validity overlap)."""
    from dsa_stream.pipeline.calibration import Roots, list_sets

    settings = get_ctx().settings()
    with read_connection() as conn:
        sets = list_sets(conn, Roots.of(settings), status=status, **window)

    def window_of(cand: Any, kind: str) -> str:
        table = cand.table(kind)
        if table is None:
            return "-"
        w = table.window
        return f"{_ts(w.valid_from)} .. {_ts(w.valid_to)}"

    def render(_data: Any) -> None:
        emit_table(
            "calibration table sets",
            ("set", "v", "calibrator", "transit", "Dec", "status", "bandpass valid", "gain valid"),
            (
                (
                    c.set_name,
                    c.version,
                    c.calibrator,
                    _ts(c.transit),
                    f"{c.dec_deg:.3f}",
                    ",".join(sorted({t.status for t in c.tables})),
                    window_of(c, "bandpass"),
                    window_of(c, "gain"),
                )
                for c in sets
            ),
        )

    emit([c.model_dump(mode="json") for c in sets], render)


def _render_stats(stats: RegistryStats) -> None:
    health = stats.health
    click.echo(f"health: {health.status}")
    for reason in health.reasons:
        click.echo(f"  - {reason}")
    counts = [
        ("jobs", stats.jobs_by_state),
        ("groups", stats.groups_by_state),
        ("files", stats.files_by_state),
        ("workers", stats.workers_by_state),
    ]
    emit_table(
        "counts by state",
        ("table", "counts"),
        ((name, ", ".join(f"{k}={v}" for k, v in sorted(c.items())) or "-") for name, c in counts),
    )
    click.echo(f"dead letter: {stats.dead_letter}")
    click.echo(f"rejected input files: {stats.files_rejected}")
    emit_table(
        "stage durations (claim to success)",
        ("kind", "n", "p50 s", "p95 s"),
        ((d.kind, d.n, f"{d.p50_s:.1f}", f"{d.p95_s:.1f}") for d in stats.durations),
    )
    emit_table(
        "running jobs",
        ("id", "kind", "group", "worker", "attempt", "progress", "heartbeat age s"),
        (
            (
                j.id,
                j.kind,
                j.group_key,
                (j.worker_id or "")[:8],
                j.attempt,
                "" if j.progress is None else f"{j.progress:.0%}",
                j.heartbeat_age_s,
            )
            for j in stats.running
        ),
    )


@registry_group.command("stats")
@json_option
def stats_cmd() -> None:
    """Counts by state, health, stage durations, dead letter and running jobs."""
    settings = get_ctx().settings()
    with read_connection() as conn:
        stats = registry_stats(
            conn, now=db_now(conn), worker=settings.worker, grouping=settings.grouping
        )
    emit(stats.model_dump(mode="json"), lambda _d: _render_stats(stats))
