"""Initial registry schema: workers, groups, input files, jobs + events, products + lineage,
mosaic windows, calibrations; terminal-job guard and append-only event triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Frozen history: the state lists below are spelled out literally (they must not
follow later code changes); tests/registry/test_schema.py checks them against
dsa_stream.registry.states.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# UTC instants: timestamptz on PostgreSQL, fixed-width ISO-8601 'Z' text on SQLite.
TS = sa.DateTime(timezone=True).with_variant(sa.String(27), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _where(sql: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(sql), "postgresql_where": sa.text(sql)}


SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER trg_jobs_terminal_guard BEFORE UPDATE ON jobs
    FOR EACH ROW WHEN OLD.state IN ('succeeded', 'dead', 'cancelled')
    BEGIN
        SELECT RAISE(ABORT, 'dsa-stream: terminal job (succeeded/dead/cancelled) cannot change');
    END
    """,
    """
    CREATE TRIGGER trg_job_events_append_only BEFORE UPDATE ON job_events
    FOR EACH ROW
    BEGIN
        SELECT RAISE(ABORT, 'dsa-stream: job_events is append-only');
    END
    """,
)

POSTGRES_TRIGGERS = (
    """
    CREATE FUNCTION dsa_jobs_terminal_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'dsa-stream: job % is terminal (%) and cannot change', OLD.id, OLD.state
            USING ERRCODE = 'check_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER trg_jobs_terminal_guard BEFORE UPDATE ON jobs
    FOR EACH ROW WHEN (OLD.state IN ('succeeded', 'dead', 'cancelled'))
    EXECUTE FUNCTION dsa_jobs_terminal_guard()
    """,
    """
    CREATE FUNCTION dsa_job_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'dsa-stream: job_events is append-only'
            USING ERRCODE = 'check_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER trg_job_events_append_only BEFORE UPDATE ON job_events
    FOR EACH ROW EXECUTE FUNCTION dsa_job_events_append_only()
    """,
)


def _workers() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("proc_start", sa.String(32), nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stop_requested", sa.String(8), nullable=True),
        sa.Column("current_job_id", sa.Integer(), nullable=True),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            _in("state", ("active", "draining", "stopped", "dead")), name="ck_workers_state"
        ),
        sa.CheckConstraint(
            "stop_requested IS NULL OR " + _in("stop_requested", ("drain", "kill")),
            name="ck_workers_stop_requested",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )
    op.create_index("ix_workers_state", "workers", ["state"])
    op.create_index("ix_workers_host", "workers", ["host"])


def _groups_and_files() -> None:
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_key", sa.String(64), nullable=False),
        sa.Column("obs_time", TS, nullable=False),
        sa.Column("dec_deg", sa.Float(), nullable=True),
        sa.Column("n_present", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("n_expected", sa.Integer(), server_default=sa.text("16"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("missing_subbands", sa.JSON(), nullable=True),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.CheckConstraint(
            _in(
                "state",
                (
                    "collecting",
                    "complete",
                    "incomplete",
                    "processing",
                    "done",
                    "failed",
                    "quarantined",
                ),
            ),
            name="ck_groups_state",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_groups"),
        sa.UniqueConstraint("group_key", name="uq_groups_group_key"),
    )
    op.create_index("ix_groups_state_obs_time", "groups", ["state", "obs_time"])
    op.create_index("ix_groups_obs_time", "groups", ["obs_time"])
    op.create_table(
        "input_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.String(64), nullable=False),
        sa.Column("rel_path", sa.String(1024), nullable=False),
        sa.Column("obs_time", TS, nullable=False),
        sa.Column("subband", sa.Integer(), nullable=False),
        sa.Column("dec_deg", sa.Float(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            _in("state", ("registered", "quarantined", "missing", "consumed")),
            name="ck_input_files_state",
        ),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], name="fk_input_files_group_id_groups"),
        sa.PrimaryKeyConstraint("id", name="pk_input_files"),
        sa.UniqueConstraint("root_id", "rel_path", name="uq_input_files_root_id_rel_path"),
    )
    op.create_index(
        "uq_input_files_group_subband_valid",
        "input_files",
        ["group_id", "subband"],
        unique=True,
        **_where("state IN ('registered', 'consumed')"),
    )
    op.create_index("ix_input_files_group_id", "input_files", ["group_id"])
    op.create_index("ix_input_files_state", "input_files", ["state"])


def _windows() -> None:
    op.create_table(
        "mosaic_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("window_key", sa.String(64), nullable=False),
        sa.Column("obs_start", TS, nullable=False),
        sa.Column("obs_end", TS, nullable=False),
        sa.Column("dec_deg", sa.Float(), nullable=True),
        sa.Column("n_members", sa.Integer(), server_default=sa.text("10"), nullable=False),
        sa.Column("n_members_done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            _in("state", ("open", "ready", "mosaicking", "done", "stale")),
            name="ck_mosaic_windows_state",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mosaic_windows"),
        sa.UniqueConstraint("window_key", name="uq_mosaic_windows_window_key"),
    )
    op.create_index("ix_mosaic_windows_obs_start", "mosaic_windows", ["obs_start"])


def _jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("window_id", sa.Integer(), nullable=True),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("order_key", TS, nullable=False),
        sa.Column("available_at", TS, nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("5"), nullable=False),
        sa.Column("lease_owner", sa.String(36), nullable=True),
        sa.Column("lease_token", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("error_class", sa.String(32), nullable=True),
        sa.Column("requeue_of", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.CheckConstraint(
            _in("state", ("queued", "running", "succeeded", "dead", "cancelled")),
            name="ck_jobs_state",
        ),
        sa.CheckConstraint("attempt >= 0 AND attempt <= max_attempts", name="ck_jobs_attempts"),
        sa.CheckConstraint(
            "progress IS NULL OR (progress >= 0 AND progress <= 1)", name="ck_jobs_progress"
        ),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], name="fk_jobs_group_id_groups"),
        sa.ForeignKeyConstraint(
            ["window_id"], ["mosaic_windows.id"], name="fk_jobs_window_id_mosaic_windows"
        ),
        sa.ForeignKeyConstraint(
            ["lease_owner"], ["workers.id"], name="fk_jobs_lease_owner_workers"
        ),
        sa.ForeignKeyConstraint(["requeue_of"], ["jobs.id"], name="fk_jobs_requeue_of_jobs"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index(
        "uq_jobs_active_dedupe",
        "jobs",
        ["dedupe_key"],
        unique=True,
        **_where("state IN ('queued', 'running')"),
    )
    op.create_index(
        "uq_jobs_succeeded_dedupe",
        "jobs",
        ["dedupe_key"],
        unique=True,
        **_where("state = 'succeeded'"),
    )
    op.create_index(
        "ix_jobs_claim",
        "jobs",
        [sa.text("priority DESC"), "order_key", "id"],
        **_where("state = 'queued'"),
    )
    op.create_index("ix_jobs_leases", "jobs", ["lease_expires_at"], **_where("state = 'running'"))
    op.create_index("ix_jobs_group_id", "jobs", ["group_id"])
    op.create_index("ix_jobs_state_kind", "jobs", ["state", "kind"])
    op.create_index("ix_jobs_requeue_of", "jobs", ["requeue_of"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(36), nullable=True),
        sa.Column("lease_token", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_events_job_id_jobs"),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])
    op.create_index("ix_job_events_at", "job_events", ["at"])


def _products() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("logical_key", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("window_id", sa.Integer(), nullable=True),
        sa.Column("root_id", sa.String(64), nullable=False),
        sa.Column("rel_path", sa.String(1024), nullable=False),
        sa.Column("manifest_hash", sa.String(128), nullable=False),
        sa.Column("obs_start", TS, nullable=False),
        sa.Column("obs_end", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("published_root_id", sa.String(64), nullable=True),
        sa.Column("published_rel_path", sa.String(1024), nullable=True),
        sa.Column("published_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            _in(
                "state",
                ("committed", "publishing", "published", "registered", "superseded", "cleaned"),
            ),
            name="ck_products_state",
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_products_job_id_jobs"),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"], name="fk_products_group_id_groups"),
        sa.ForeignKeyConstraint(
            ["window_id"], ["mosaic_windows.id"], name="fk_products_window_id_mosaic_windows"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.UniqueConstraint(
            "kind", "logical_key", "version", name="uq_products_kind_logical_key_version"
        ),
    )
    op.create_index("ix_products_group_id", "products", ["group_id"])
    op.create_index("ix_products_obs_start", "products", ["obs_start"])
    op.create_index("ix_products_job_id", "products", ["job_id"])
    op.create_table(
        "product_lineage",
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.Column("child_id", sa.Integer(), nullable=False),
        sa.Column("relation", sa.String(32), server_default=sa.text("'input'"), nullable=False),
        sa.CheckConstraint("parent_id <> child_id", name="ck_product_lineage_not_self"),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["products.id"], name="fk_product_lineage_parent_id_products"
        ),
        sa.ForeignKeyConstraint(
            ["child_id"], ["products.id"], name="fk_product_lineage_child_id_products"
        ),
        sa.PrimaryKeyConstraint("parent_id", "child_id", name="pk_product_lineage"),
    )
    op.create_index("ix_product_lineage_child_id", "product_lineage", ["child_id"])
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("valid_from_obs", TS, nullable=False),
        sa.Column("valid_to_obs", TS, nullable=False),
        sa.Column("dec_deg", sa.Float(), nullable=True),
        sa.Column("calibrator", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("qa", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            _in("status", ("candidate", "valid", "rejected", "superseded")),
            name="ck_calibrations_status",
        ),
        sa.CheckConstraint("valid_to_obs >= valid_from_obs", name="ck_calibrations_window"),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name="fk_calibrations_product_id_products"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_calibrations"),
    )
    op.create_index(
        "ix_calibrations_status_valid_from_obs", "calibrations", ["status", "valid_from_obs"]
    )
    op.create_index("ix_calibrations_product_id", "calibrations", ["product_id"])


def upgrade() -> None:
    _workers()
    _groups_and_files()
    _windows()
    _jobs()
    _products()
    dialect = op.get_bind().dialect.name
    for sql in POSTGRES_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trg_job_events_append_only ON job_events")
        op.execute("DROP TRIGGER IF EXISTS trg_jobs_terminal_guard ON jobs")
        op.execute("DROP FUNCTION IF EXISTS dsa_job_events_append_only()")
        op.execute("DROP FUNCTION IF EXISTS dsa_jobs_terminal_guard()")
    else:
        op.execute("DROP TRIGGER IF EXISTS trg_job_events_append_only")
        op.execute("DROP TRIGGER IF EXISTS trg_jobs_terminal_guard")
    for table in (
        "calibrations",
        "product_lineage",
        "products",
        "job_events",
        "jobs",
        "mosaic_windows",
        "input_files",
        "groups",
        "workers",
    ):
        op.drop_table(table)
