"""automatic_recipients: the automatic-reply rate limit counted by an index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The limit looks back one hour; a day of history is more than it will ever read.
BACKFILL = timedelta(days=1)


def upgrade() -> None:
    table = op.create_table(
        'automatic_recipients',
        sa.Column('outbox_id', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id']),
        sa.PrimaryKeyConstraint('outbox_id', 'address'),
    )
    op.create_index(
        'ix_automatic_recipients_address_at', 'automatic_recipients', ['address', 'at']
    )
    outbox = sa.table(
        'outbox',
        sa.column('id', sa.Integer),
        sa.column('kind', sa.String),
        sa.column('recipients', sa.JSON),
        sa.column('created_at', sa.DateTime(timezone=True)),
    )
    since = datetime.now(UTC) - BACKFILL
    rows = op.get_bind().execute(
        sa.select(outbox.c.id, outbox.c.recipients, outbox.c.created_at).where(
            outbox.c.kind == 'auto_reply', outbox.c.created_at >= since
        )
    )
    values = [
        {'outbox_id': row_id, 'address': address, 'at': at}
        for row_id, recipients, at in rows
        for address in sorted({r.lower() for r in _listed(recipients)})
    ]
    if values:
        op.bulk_insert(table, values)


def _listed(recipients: object) -> list[str]:
    value = json.loads(recipients) if isinstance(recipients, str) else recipients
    return [r for r in value if isinstance(r, str)] if isinstance(value, list) else []


def downgrade() -> None:
    op.drop_index('ix_automatic_recipients_address_at', table_name='automatic_recipients')
    op.drop_table('automatic_recipients')
