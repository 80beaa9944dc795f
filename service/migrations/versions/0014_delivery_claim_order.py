"""delivery: the claim index ends with the id, so a claim stops at its batch

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_edition_status")
        batch_op.create_index("ix_delivery_edition_status", ["edition_id", "status", "id"])


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_edition_status")
        batch_op.create_index("ix_delivery_edition_status", ["edition_id", "status"])
