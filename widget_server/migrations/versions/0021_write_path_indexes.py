"""Indexes of the ledger's write path: a deal's pending outbox jobs found in one probe (the pending field
sync every entry asks for had walked all of a portal's jobs), and three portal_id indexes dropped that
duplicated the first column of a unique constraint (each was one more B-tree page per written row)

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-24 05:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0021'
down_revision: Union[str, Sequence[str], None] = '0020'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(
        'ix_outbox_jobs_pending_by_deal', 'outbox_jobs', ['portal_id', 'deal_id', 'operation'], unique=False,
        sqlite_where=sa.text("state = 'pending'"), postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_index(op.f('ix_outbox_jobs_portal_id'), table_name='outbox_jobs')
    op.drop_index(op.f('ix_ledger_entries_portal_id'), table_name='ledger_entries')
    op.drop_index(op.f('ix_idempotency_records_portal_id'), table_name='idempotency_records')


def downgrade() -> None:
    """Downgrade schema."""
    op.create_index(op.f('ix_idempotency_records_portal_id'), 'idempotency_records', ['portal_id'], unique=False)
    op.create_index(op.f('ix_ledger_entries_portal_id'), 'ledger_entries', ['portal_id'], unique=False)
    op.create_index(op.f('ix_outbox_jobs_portal_id'), 'outbox_jobs', ['portal_id'], unique=False)
    op.drop_index(
        'ix_outbox_jobs_pending_by_deal', table_name='outbox_jobs',
        sqlite_where=sa.text("state = 'pending'"), postgresql_where=sa.text("state = 'pending'"),
    )
