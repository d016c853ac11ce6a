"""inbox outcome own_write

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 21:40:00

"""
from typing import Sequence, Union

from alembic import op


revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_NEW = "outcome IN ('pending', 'handled', 'ignored', 'own_write', 'unsupported', 'failed')"
_OLD = "outcome IN ('pending', 'handled', 'ignored', 'unsupported', 'failed')"


def _replace(check: str) -> None:
    # SQLite cannot alter a CHECK in place: batch mode rebuilds the table.
    with op.batch_alter_table('inbox_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_inbox_events_outcome'), type_='check')
        batch_op.create_check_constraint(op.f('ck_inbox_events_outcome'), check)


def upgrade() -> None:
    _replace(_NEW)


def downgrade() -> None:
    op.execute("UPDATE inbox_events SET outcome = 'ignored' WHERE outcome = 'own_write'")
    _replace(_OLD)
