"""outbox delivery state: claim lease, retry deadline, per-recipient status

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('retry_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('recipient_status', sa.JSON(), nullable=True))
        batch_op.create_index('ix_outbox_kind_created_at', ['kind', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_kind_created_at')
        batch_op.drop_column('recipient_status')
        batch_op.drop_column('retry_until')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claimed_at')
