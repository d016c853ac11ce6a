"""journey_followups: sandbox deals keep native tags (add_deal_tag), as amoCRM leads do

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24 02:10:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision: str = '0017'
down_revision: Union[str, Sequence[str], None] = '0016'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('sandbox_deals', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'tags',
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                server_default=sa.text("'[]'"),
                nullable=False,
            )
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('sandbox_deals', schema=None) as batch_op:
        batch_op.drop_column('tags')
