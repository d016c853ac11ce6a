"""supervisor role for API keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 09:00:00

"""
from typing import Sequence, Union

from alembic import op


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_NEW = "role IN ('viewer', 'staff', 'supervisor', 'finance', 'admin')"
_OLD = "role IN ('viewer', 'staff', 'finance', 'admin')"


def upgrade() -> None:
    # SQLite cannot alter a CHECK in place: batch mode rebuilds the table.
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_api_keys_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_api_keys_role'), _NEW)


def downgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_api_keys_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_api_keys_role'), _OLD)
