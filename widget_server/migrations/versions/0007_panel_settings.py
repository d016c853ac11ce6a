"""panel_settings

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 09:00:00

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
from sqlalchemy.dialects import postgresql


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('portal_settings_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('changed_by', sa.String(length=128), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('snapshot', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.CheckConstraint('version >= 1', name=op.f('ck_portal_settings_versions_version_positive')),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_portal_settings_versions_portal_id_portals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_settings_versions')),
    sa.UniqueConstraint('portal_id', 'version', name=op.f('uq_portal_settings_versions_portal_id_version'))
    )
    with op.batch_alter_table('portal_settings_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_settings_versions_portal_id'), ['portal_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('portal_settings_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_settings_versions_portal_id'))

    op.drop_table('portal_settings_versions')
