"""team: roles, assignments, audit log

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('editor_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('object_type', sa.String(length=40), nullable=False),
    sa.Column('object_id', sa.String(length=100), nullable=False),
    sa.Column('client_network', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['editor_id'], ['editor.id'], name=op.f('fk_audit_entry_editor_id_editor'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entry'))
    )
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entry_action'), ['action'], unique=False)
        batch_op.create_index('ix_audit_entry_at', ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_editor_id'), ['editor_id'], unique=False)

    op.create_table('editor_newsletter',
    sa.Column('editor_id', sa.Integer(), nullable=False),
    sa.Column('newsletter_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['editor_id'], ['editor.id'], name=op.f('fk_editor_newsletter_editor_id_editor'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['newsletter_id'], ['newsletter.id'], name=op.f('fk_editor_newsletter_newsletter_id_newsletter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('editor_id', 'newsletter_id', name=op.f('pk_editor_newsletter'))
    )
    with op.batch_alter_table('editor', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_disabled', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('language', sa.String(length=8), server_default='', nullable=False))
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('totp_recovery', sa.Text(), server_default='', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('editor', schema=None) as batch_op:
        batch_op.drop_column('totp_recovery')
        batch_op.drop_column('totp_secret')
        batch_op.drop_column('language')
        batch_op.drop_column('is_disabled')

    op.drop_table('editor_newsletter')
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_entry_editor_id'))
        batch_op.drop_index('ix_audit_entry_at')
        batch_op.drop_index(batch_op.f('ix_audit_entry_action'))

    op.drop_table('audit_entry')
