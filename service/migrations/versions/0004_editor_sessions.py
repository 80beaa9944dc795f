"""editor sessions recorded on the server

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('editor_session',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('editor_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('client_network', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['editor_id'], ['editor.id'], name=op.f('fk_editor_session_editor_id_editor'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_editor_session'))
    )
    with op.batch_alter_table('editor_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_editor_session_editor_id'), ['editor_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('editor_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_editor_session_editor_id'))

    op.drop_table('editor_session')
