"""confirmation mails

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('confirmation_mail',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('newsletter_id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.Enum('queued', 'sent', 'failed', 'skipped', name='confirmationstatus', native_enum=False, length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['newsletter_id'], ['newsletter.id'], name=op.f('fk_confirmation_mail_newsletter_id_newsletter'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_confirmation_mail_subscription_id_subscription'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_confirmation_mail'))
    )
    with op.batch_alter_table('confirmation_mail', schema=None) as batch_op:
        batch_op.create_index('ix_confirmation_mail_newsletter_status', ['newsletter_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_confirmation_mail_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_confirmation_mail_subscription_id'), ['subscription_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('confirmation_mail', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_confirmation_mail_subscription_id'))
        batch_op.drop_index(batch_op.f('ix_confirmation_mail_request_id'))
        batch_op.drop_index('ix_confirmation_mail_newsletter_status')

    op.drop_table('confirmation_mail')
