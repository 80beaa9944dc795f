"""event evidence (who caused it) and tracking per newsletter

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('user_agent', sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column('network', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('seconds_after', sa.Double(), nullable=True))
        batch_op.add_column(
            sa.Column(
                'actor',
                sa.Enum('human', 'machine', name='actor', native_enum=False, length=10),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column('actor_rule', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('source_key', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_event_source_key', ['source_key'], unique=True)
        # Results read one delivery's events (the burst rule) and one edition's by kind.
        batch_op.create_index('ix_event_delivery_kind', ['delivery_id', 'kind'], unique=False)
    with op.batch_alter_table('newsletter', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('tracking', sa.Boolean(), server_default=sa.true(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('newsletter', schema=None) as batch_op:
        batch_op.drop_column('tracking')
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index('ix_event_delivery_kind')
        batch_op.drop_index('ix_event_source_key')
        batch_op.drop_column('source_key')
        batch_op.drop_column('actor_rule')
        batch_op.drop_column('actor')
        batch_op.drop_column('seconds_after')
        batch_op.drop_column('network')
        batch_op.drop_column('user_agent')
        batch_op.drop_column('method')
