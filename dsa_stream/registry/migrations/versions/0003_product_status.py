"""Product QA and validation status; built version and members of mosaic windows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

``products.qa_status`` (passed / failed / not_checked) is the science verdict of
the stage that made the product; ``products.validation_status`` (valid / invalid /
unchecked) is the finalize step's verdict on the files (they exist, open and match
their manifest). ``products.qa`` keeps the QA figures. ``mosaic_windows`` records the
version of which a mosaic was built and its members (group key and image product id),
which the planner pins. Frozen history: values are spelled out literally.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("products", sa.Column("qa_status", sa.String(16), nullable=True))
    op.add_column("products", sa.Column("validation_status", sa.String(16), nullable=True))
    op.add_column("products", sa.Column("qa", sa.JSON(), nullable=True))
    op.add_column("mosaic_windows", sa.Column("built_version", sa.Integer(), nullable=True))
    op.add_column("mosaic_windows", sa.Column("members", sa.JSON(), nullable=True))
    op.create_index("ix_products_kind_state", "products", ["kind", "state"])


def downgrade() -> None:
    op.drop_index("ix_products_kind_state", table_name="products")
    op.drop_column("mosaic_windows", "members")
    op.drop_column("mosaic_windows", "built_version")
    op.drop_column("products", "qa")
    op.drop_column("products", "validation_status")
    op.drop_column("products", "qa_status")
