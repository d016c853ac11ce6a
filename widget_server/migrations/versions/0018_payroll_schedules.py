"""payroll_schedules: weekly and cyclic «Рабочие графики» per operator (effective-dated, with day overrides);
a patient's other phones as rows, so the caller lookup finds them from an index alone (backfilled)

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

    op.create_table('mis_patient_phones',
    sa.Column('id', _ID, nullable=False),
    sa.Column('portal_id', _ID, nullable=False),
    sa.Column('patient_id', _ID, nullable=False),
    sa.Column('phone_e164', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['mis_patients.id'], name=op.f('fk_mis_patient_phones_patient_id_mis_patients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_mis_patient_phones_portal_id_portals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mis_patient_phones')),
    sa.UniqueConstraint('portal_id', 'phone_e164', 'patient_id', name=op.f('uq_mis_patient_phones_portal_id_phone_e164_patient_id'))
    )
    with op.batch_alter_table('mis_patient_phones', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mis_patient_phones_patient_id'), ['patient_id'], unique=False)
    _backfill_patient_phones()


def _backfill_patient_phones() -> None:
    patients = sa.table(
        'mis_patients', sa.column('id', _ID), sa.column('portal_id', _ID), sa.column('phone_e164', sa.String),
        sa.column('other_phones', _JSON),
    )
    phones = sa.table(
        'mis_patient_phones', sa.column('portal_id', _ID), sa.column('patient_id', _ID),
        sa.column('phone_e164', sa.String),
    )
    bind = op.get_bind()
    rows = []
    # Read first, then insert: SQLite's driver would not keep an open cursor across the inserts.
    for patient_id, portal_id, phone, others in bind.execute(
        sa.select(patients.c.id, patients.c.portal_id, patients.c.phone_e164, patients.c.other_phones)
    ).all():
        for other in dict.fromkeys(others or ()):
            if other and other != phone:
                rows.append({'portal_id': portal_id, 'patient_id': patient_id, 'phone_e164': other})
        if len(rows) >= 5000:
            bind.execute(phones.insert(), rows)
            rows = []
    if rows:
        bind.execute(phones.insert(), rows)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('mis_patient_phones', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mis_patient_phones_patient_id'))
    op.drop_table('mis_patient_phones')
    with op.batch_alter_table('payroll_schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payroll_schedules_portal_id'))
    op.drop_table('payroll_schedules')
