"""inpatient_deals_outside_sales: deals last seen outside the «ready to sign» pipeline, so a Bitrix24
ONCRMDEALUPDATE of one is not read again (the slot was meant for a rounds index; none paid: the due
rounds' cost was the rows turned into Python objects and the garbage collector, not the plan)

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-24 03:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0019'
down_revision: Union[str, Sequence[str], None] = '0018'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('inpatient_deals_outside_sales',
    sa.Column('id', _ID, nullable=False),
    sa.Column('portal_id', _ID, nullable=False),
    sa.Column('deal_id', sa.String(length=64), nullable=False),
    sa.Column('pipeline_id', sa.String(length=64), nullable=False),
    sa.Column('stage_id', sa.String(length=64), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_deals_outside_sales_portal_id_portals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_deals_outside_sales')),
    sa.UniqueConstraint('portal_id', 'deal_id', name=op.f('uq_inpatient_deals_outside_sales_portal_id_deal_id'))
    )
    op.create_index(op.f('ix_inpatient_deals_outside_sales_portal_id'), 'inpatient_deals_outside_sales', ['portal_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_inpatient_deals_outside_sales_portal_id'), table_name='inpatient_deals_outside_sales')
    op.drop_table('inpatient_deals_outside_sales')
