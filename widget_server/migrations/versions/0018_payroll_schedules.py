"""payroll_schedules: weekly and cyclic «Рабочие графики» per operator (effective-dated, with day overrides)

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-24 02:10:00

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
from sqlalchemy.dialects import postgresql
from sqlalchemy import Text


revision: str = '0018'
down_revision: Union[str, Sequence[str], None] = '0017'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql')


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('payroll_schedules',
    sa.Column('id', _ID, nullable=False),
    sa.Column('portal_id', _ID, nullable=False),
    sa.Column('user_id', _ID, nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('spec', _JSON, nullable=False),
    sa.Column('overrides', _JSON, nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('weekly', 'cyclic', 'calendar')", name=op.f('ck_payroll_schedules_kind')),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_payroll_schedules_portal_id_portals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['portal_users.id'], name=op.f('fk_payroll_schedules_user_id_portal_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payroll_schedules')),
    sa.UniqueConstraint('portal_id', 'user_id', 'effective_from', name=op.f('uq_payroll_schedules_portal_id_user_id_effective_from'))
    )
    with op.batch_alter_table('payroll_schedules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payroll_schedules_portal_id'), ['portal_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('payroll_schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payroll_schedules_portal_id'))
    op.drop_table('payroll_schedules')
