"""Running balance on every ledger entry: the balance becomes a probe of the account's chain head instead of
a sum over all of the stay's entries (read under the account's write lock by every posting)

Existing rows are backfilled with the running sum in seq order; only then is the column made NOT NULL, so
a writer that forgets it fails instead of storing a default.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-24 07:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0022'
down_revision: Union[str, Sequence[str], None] = '0021'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# UPDATE … FROM: PostgreSQL, and SQLite since 3.33. The frame is spelled out: each account's seq is unique,
# but ROWS says "this row and every earlier one" without relying on that.
_BACKFILL = """
UPDATE ledger_entries SET balance_after_minor = r.running
FROM (
    SELECT id, SUM(sign * amount_minor) OVER (
        PARTITION BY account_id ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS running
    FROM ledger_entries
) AS r
WHERE r.id = ledger_entries.id
"""


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('ledger_entries', sa.Column('balance_after_minor', sa.BigInteger(), nullable=True))
    op.execute(_BACKFILL)
    # SQLite cannot add NOT NULL to a column in place: batch mode rebuilds the table (PostgreSQL: ALTER).
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.alter_column('balance_after_minor', existing_type=sa.BigInteger(), nullable=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_column('balance_after_minor')
