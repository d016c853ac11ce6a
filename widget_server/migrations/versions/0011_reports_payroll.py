"""reports_payroll

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 09:00:00

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
from sqlalchemy.dialects import postgresql
from sqlalchemy import Text


revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql')


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('payroll_rates',
    sa.Column('id', _ID, nullable=False),
    sa.Column('portal_id', _ID, nullable=False),
    sa.Column('user_id', _ID, nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('hourly_rate', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('overtime_rate', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('primary_bonus', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('waiting_list_bonus', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('overtime_basis', sa.String(length=8), nullable=False),
    sa.Column('mis_names', _JSON, nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("overtime_basis IN ('day', 'month')", name=op.f('ck_payroll_rates_overtime_basis')),
    sa.CheckConstraint('hourly_rate >= 0 AND overtime_rate >= 0 AND primary_bonus >= 0 AND waiting_list_bonus >= 0', name=op.f('ck_payroll_rates_non_negative')),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_payroll_rates_portal_id_portals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['portal_users.id'], name=op.f('fk_payroll_rates_user_id_portal_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payroll_rates')),
    sa.UniqueConstraint('portal_id', 'user_id', 'effective_from', name=op.f('uq_payroll_rates_portal_id_user_id_effective_from'))
    )
    with op.batch_alter_table('payroll_rates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payroll_rates_portal_id'), ['portal_id'], unique=False)

    op.create_table('payroll_statements',
    sa.Column('id', _ID, nullable=False),
    sa.Column('portal_id', _ID, nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('document', _JSON, nullable=False),
    sa.Column('head_user_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_payroll_statements_portal_id_portals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payroll_statements')),
    sa.UniqueConstraint('portal_id', 'month', name=op.f('uq_payroll_statements_portal_id_month'))
    )
    with op.batch_alter_table('payroll_statements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payroll_statements_portal_id'), ['portal_id'], unique=False)

    # Reports read a portal's visits by local date whatever their source, from the index alone.
    with op.batch_alter_table('mis_appointments', schema=None) as batch_op:
        batch_op.create_index('ix_mis_appointments_portal_start', ['portal_id', 'starts_at', 'status', 'patient_id'], unique=False)
    # The caller pop-up finds a number's untaken inquiries.
    with op.batch_alter_table('mis_leads', schema=None) as batch_op:
        batch_op.create_index('ix_mis_leads_portal_phone', ['portal_id', 'phone_e164'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('mis_leads', schema=None) as batch_op:
        batch_op.drop_index('ix_mis_leads_portal_phone')
    with op.batch_alter_table('mis_appointments', schema=None) as batch_op:
        batch_op.drop_index('ix_mis_appointments_portal_start')
    with op.batch_alter_table('payroll_statements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payroll_statements_portal_id'))
    op.drop_table('payroll_statements')
    with op.batch_alter_table('payroll_rates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payroll_rates_portal_id'))
    op.drop_table('payroll_rates')
