"""followups: sandbox companies (a contact's company, company notes) for the CRM contract's new calls

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('sandbox_companies',
    sa.Column('id', _ID, nullable=False),
    sa.Column('portal_id', _ID, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('responsible_user_id', _ID, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_sandbox_companies_portal_id_portals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['responsible_user_id'], ['sandbox_users.id'], name=op.f('fk_sandbox_companies_responsible_user_id_sandbox_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_companies'))
    )
    with op.batch_alter_table('sandbox_companies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_companies_portal_id'), ['portal_id'], unique=False)

    op.create_table('sandbox_company_notes',
    sa.Column('id', _ID, nullable=False),
    sa.Column('portal_id', _ID, nullable=False),
    sa.Column('company_id', _ID, nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_key', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['company_id'], ['sandbox_companies.id'], name=op.f('fk_sandbox_company_notes_company_id_sandbox_companies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_sandbox_company_notes_portal_id_portals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_company_notes')),
    sa.UniqueConstraint('portal_id', 'created_key', name=op.f('uq_sandbox_company_notes_portal_id_created_key'))
    )
    with op.batch_alter_table('sandbox_company_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_company_notes_company_id'), ['company_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sandbox_company_notes_portal_id'), ['portal_id'], unique=False)

    with op.batch_alter_table('sandbox_contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('company_id', _ID, nullable=True))
        batch_op.create_index(batch_op.f('ix_sandbox_contacts_company_id'), ['company_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_sandbox_contacts_company_id_sandbox_companies'), 'sandbox_companies', ['company_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('sandbox_contacts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sandbox_contacts_company_id_sandbox_companies'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_sandbox_contacts_company_id'))
        batch_op.drop_column('company_id')

    with op.batch_alter_table('sandbox_company_notes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_company_notes_portal_id'))
        batch_op.drop_index(batch_op.f('ix_sandbox_company_notes_company_id'))
    op.drop_table('sandbox_company_notes')

    with op.batch_alter_table('sandbox_companies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_companies_portal_id'))
    op.drop_table('sandbox_companies')
