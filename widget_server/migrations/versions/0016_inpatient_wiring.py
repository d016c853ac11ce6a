"""inpatient_wiring: arrival requests (a sales deal in the «ready to sign» stage asked once for arrival and budget)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24 02:10:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0016'
down_revision: Union[str, Sequence[str], None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('inpatient_arrival_requests',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('deal_id', sa.String(length=64), nullable=False),
    sa.Column('pipeline_id', sa.String(length=64), nullable=False),
    sa.Column('stage_id', sa.String(length=64), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_arrival_requests_portal_id_portals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_arrival_requests')),
    sa.UniqueConstraint('portal_id', 'deal_id', name=op.f('uq_inpatient_arrival_requests_portal_id_deal_id'))
    )
    op.create_index(op.f('ix_inpatient_arrival_requests_portal_id'), 'inpatient_arrival_requests', ['portal_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_inpatient_arrival_requests_portal_id'), table_name='inpatient_arrival_requests')
    op.drop_table('inpatient_arrival_requests')
