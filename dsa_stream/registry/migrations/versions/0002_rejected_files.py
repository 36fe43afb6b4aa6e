"""Rejected files: inputs that never became valid subband files, with the reason.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

A file that cannot be validated has no group and no observation time, so it
cannot be an ``input_files`` row. One row per version of a path
``(root_id, rel_path, size, mtime_ns)``; at most one open (``rejected``) row per
path (partial unique index). Frozen history: the state list is spelled out
literally; tests check it against ``dsa_stream.registry.rejections``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# UTC instants: timestamptz on PostgreSQL, fixed-width ISO-8601 'Z' text on SQLite.
TS = sa.DateTime(timezone=True).with_variant(sa.String(27), "sqlite")
OPEN = "state = 'rejected'"


def upgrade() -> None:
    op.create_table(
        "rejected_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.String(64), nullable=False),
        sa.Column("rel_path", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("resolved_file_id", sa.Integer(), nullable=True),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("rejected_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.CheckConstraint(
            "state IN ('rejected', 'resolved', 'superseded', 'removed')",
            name="ck_rejected_files_state",
        ),
        sa.ForeignKeyConstraint(
            ["resolved_file_id"],
            ["input_files.id"],
            name="fk_rejected_files_resolved_file_id_input_files",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_files"),
        sa.UniqueConstraint(
            "root_id",
            "rel_path",
            "size",
            "mtime_ns",
            name="uq_rejected_files_root_id_rel_path_size_mtime_ns",
        ),
    )
    op.create_index(
        "uq_rejected_files_open_path",
        "rejected_files",
        ["root_id", "rel_path"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )
    op.create_index("ix_rejected_files_state", "rejected_files", ["state"])


def downgrade() -> None:
    op.drop_index("ix_rejected_files_state", table_name="rejected_files")
    op.drop_index("uq_rejected_files_open_path", table_name="rejected_files")
    op.drop_table("rejected_files")
