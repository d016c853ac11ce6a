"""inpatient: buildings and wards, stays, prescriptions, the append-only round record, escalations,
examinations, expected arrivals, relatives' notices; nurse and doctor roles for API keys

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_NEW_ROLES = "role IN ('viewer', 'staff', 'supervisor', 'finance', 'admin', 'nurse', 'doctor')"
_OLD_ROLES = "role IN ('viewer', 'staff', 'supervisor', 'finance', 'admin')"


def upgrade() -> None:
    """Upgrade schema."""
    # SQLite cannot alter a CHECK in place: batch mode rebuilds the table.
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_api_keys_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_api_keys_role'), _NEW_ROLES)
    op.create_table('inpatient_buildings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('pipeline_id', sa.String(length=64), nullable=False),
    sa.Column('admission_stage_id', sa.String(length=64), nullable=False),
    sa.Column('won_stage_id', sa.String(length=64), nullable=False),
    sa.Column('manager_user_id', sa.String(length=64), nullable=False),
    sa.Column('nurse_user_id', sa.String(length=64), nullable=True),
    sa.Column('profiles', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_buildings_portal_id_portals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_buildings')),
    sa.UniqueConstraint('portal_id', 'name', name=op.f('uq_inpatient_buildings_portal_id_name'))
    )
    op.create_index(op.f('ix_inpatient_buildings_portal_id'), 'inpatient_buildings', ['portal_id'], unique=False)
    op.create_table('inpatient_expected_arrivals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('deal_id', sa.String(length=64), nullable=False),
    sa.Column('arrival_date', sa.Date(), nullable=False),
    sa.Column('budget_minor', sa.BigInteger(), nullable=True),
    sa.Column('profile', sa.String(length=64), nullable=True),
    sa.Column('building_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('tasked_on', sa.Date(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('budget_minor IS NULL OR budget_minor >= 0', name=op.f('ck_inpatient_expected_arrivals_budget_not_negative')),
    sa.ForeignKeyConstraint(['building_id'], ['inpatient_buildings.id'], name=op.f('fk_inpatient_expected_arrivals_building_id_inpatient_buildings')),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_expected_arrivals_portal_id_portals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_expected_arrivals')),
    sa.UniqueConstraint('portal_id', 'deal_id', name=op.f('uq_inpatient_expected_arrivals_portal_id_deal_id'))
    )
    op.create_index('ix_inpatient_expected_arrivals_day', 'inpatient_expected_arrivals', ['portal_id', 'arrival_date'], unique=False)
    op.create_index(op.f('ix_inpatient_expected_arrivals_portal_id'), 'inpatient_expected_arrivals', ['portal_id'], unique=False)
    op.create_table('inpatient_wards',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('building_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('beds', sa.Integer(), nullable=False),
    sa.CheckConstraint('beds > 0', name=op.f('ck_inpatient_wards_beds_positive')),
    sa.ForeignKeyConstraint(['building_id'], ['inpatient_buildings.id'], name=op.f('fk_inpatient_wards_building_id_inpatient_buildings'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_wards_portal_id_portals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_wards')),
    sa.UniqueConstraint('building_id', 'name', name=op.f('uq_inpatient_wards_building_id_name'))
    )
    op.create_index(op.f('ix_inpatient_wards_portal_id'), 'inpatient_wards', ['portal_id'], unique=False)
    op.create_table('inpatient_stays',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('deal_id', sa.String(length=64), nullable=False),
    sa.Column('building_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ward_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bed', sa.Integer(), nullable=False),
    sa.Column('profile', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('admission_date', sa.Date(), nullable=False),
    sa.Column('discharge_date', sa.Date(), nullable=True),
    sa.Column('representative_name', sa.String(length=200), nullable=False),
    sa.Column('representative_relation', sa.String(length=64), nullable=True),
    sa.Column('representative_phone', sa.String(length=32), nullable=True),
    sa.Column('representative_email', sa.String(length=255), nullable=True),
    sa.Column('representative_consent', sa.Boolean(), nullable=False),
    sa.Column('representative_contact_id', sa.String(length=64), nullable=True),
    sa.Column('admitted_by', sa.String(length=128), nullable=False),
    sa.Column('admitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('discharge_requested_by', sa.String(length=128), nullable=True),
    sa.Column('documents_done_by', sa.String(length=128), nullable=True),
    sa.Column('discharged_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('admitted', 'discharge_requested', 'discharged')", name=op.f('ck_inpatient_stays_status')),
    sa.CheckConstraint('bed > 0', name=op.f('ck_inpatient_stays_bed_positive')),
    sa.CheckConstraint('discharge_date IS NULL OR discharge_date >= admission_date', name=op.f('ck_inpatient_stays_dates')),
    sa.ForeignKeyConstraint(['building_id'], ['inpatient_buildings.id'], name=op.f('fk_inpatient_stays_building_id_inpatient_buildings')),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_stays_portal_id_portals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ward_id'], ['inpatient_wards.id'], name=op.f('fk_inpatient_stays_ward_id_inpatient_wards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_stays'))
    )
    op.create_index('ix_inpatient_stays_building_status', 'inpatient_stays', ['building_id', 'status'], unique=False)
    op.create_index(op.f('ix_inpatient_stays_portal_id'), 'inpatient_stays', ['portal_id'], unique=False)
    op.create_index('uq_inpatient_stays_current_bed', 'inpatient_stays', ['ward_id', 'bed'], unique=True, sqlite_where=sa.text("status <> 'discharged'"), postgresql_where=sa.text("status <> 'discharged'"))
    op.create_index('uq_inpatient_stays_current_deal', 'inpatient_stays', ['portal_id', 'deal_id'], unique=True, sqlite_where=sa.text("status <> 'discharged'"), postgresql_where=sa.text("status <> 'discharged'"))
    op.create_table('inpatient_examinations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('stay_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('doctor_user_id', sa.String(length=64), nullable=False),
    sa.Column('doctor_name', sa.String(length=200), nullable=False),
    sa.Column('examined_on', sa.Date(), nullable=False),
    sa.Column('results', sa.Text(), nullable=False),
    sa.Column('links', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('next_steps', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_examinations_portal_id_portals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['stay_id'], ['inpatient_stays.id'], name=op.f('fk_inpatient_examinations_stay_id_inpatient_stays'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_examinations'))
    )
    op.create_index(op.f('ix_inpatient_examinations_portal_id'), 'inpatient_examinations', ['portal_id'], unique=False)
    op.create_index('ix_inpatient_examinations_stay', 'inpatient_examinations', ['stay_id'], unique=False)
    op.create_table('inpatient_prescriptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('stay_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('drug', sa.String(length=200), nullable=False),
    sa.Column('dose', sa.String(length=100), nullable=False),
    sa.Column('times', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('doctor_user_id', sa.String(length=64), nullable=True),
    sa.Column('doctor_name', sa.String(length=200), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stopped_by', sa.String(length=128), nullable=True),
    sa.Column('stop_reason', sa.Text(), nullable=True),
    sa.CheckConstraint('end_date IS NULL OR end_date >= start_date', name=op.f('ck_inpatient_prescriptions_dates')),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_prescriptions_portal_id_portals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['stay_id'], ['inpatient_stays.id'], name=op.f('fk_inpatient_prescriptions_stay_id_inpatient_stays'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_prescriptions'))
    )
    op.create_index(op.f('ix_inpatient_prescriptions_portal_id'), 'inpatient_prescriptions', ['portal_id'], unique=False)
    op.create_index('ix_inpatient_prescriptions_stay', 'inpatient_prescriptions', ['stay_id'], unique=False)
    op.create_table('inpatient_relative_notices',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('stay_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("channel IN ('message', 'task')", name=op.f('ck_inpatient_relative_notices_channel')),
    sa.CheckConstraint("event IN ('admission', 'purchase', 'low_balance', 'discharge')", name=op.f('ck_inpatient_relative_notices_event')),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_relative_notices_portal_id_portals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['stay_id'], ['inpatient_stays.id'], name=op.f('fk_inpatient_relative_notices_stay_id_inpatient_stays'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_relative_notices')),
    sa.UniqueConstraint('stay_id', 'event', 'ref', name=op.f('uq_inpatient_relative_notices_stay_id_event_ref'))
    )
    op.create_index(op.f('ix_inpatient_relative_notices_portal_id'), 'inpatient_relative_notices', ['portal_id'], unique=False)
    op.create_table('inpatient_round_escalations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('prescription_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_round_escalations_portal_id_portals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prescription_id'], ['inpatient_prescriptions.id'], name=op.f('fk_inpatient_round_escalations_prescription_id_inpatient_prescriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_round_escalations')),
    sa.UniqueConstraint('prescription_id', 'due_at', name=op.f('uq_inpatient_round_escalations_prescription_id_due_at'))
    )
    op.create_index(op.f('ix_inpatient_round_escalations_portal_id'), 'inpatient_round_escalations', ['portal_id'], unique=False)
    op.create_table('inpatient_round_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('portal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('stay_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('prescription_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('next_step', sa.String(length=32), nullable=True),
    sa.Column('corrects_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("outcome = 'given' OR reason IS NOT NULL", name=op.f('ck_inpatient_round_records_reason_when_not_given')),
    sa.CheckConstraint("outcome IN ('given', 'not_given')", name=op.f('ck_inpatient_round_records_outcome')),
    sa.ForeignKeyConstraint(['corrects_id'], ['inpatient_round_records.id'], name=op.f('fk_inpatient_round_records_corrects_id_inpatient_round_records')),
    sa.ForeignKeyConstraint(['portal_id'], ['portals.id'], name=op.f('fk_inpatient_round_records_portal_id_portals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prescription_id'], ['inpatient_prescriptions.id'], name=op.f('fk_inpatient_round_records_prescription_id_inpatient_prescriptions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['stay_id'], ['inpatient_stays.id'], name=op.f('fk_inpatient_round_records_stay_id_inpatient_stays'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inpatient_round_records')),
    sa.UniqueConstraint('corrects_id', name=op.f('uq_inpatient_round_records_corrects_id'))
    )
    op.create_index(op.f('ix_inpatient_round_records_portal_id'), 'inpatient_round_records', ['portal_id'], unique=False)
    op.create_index('ix_inpatient_round_records_stay_due', 'inpatient_round_records', ['stay_id', 'due_at'], unique=False)
    op.create_index('uq_inpatient_round_records_first', 'inpatient_round_records', ['prescription_id', 'due_at'], unique=True, sqlite_where=sa.text('corrects_id IS NULL'), postgresql_where=sa.text('corrects_id IS NULL'))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('uq_inpatient_round_records_first', table_name='inpatient_round_records', sqlite_where=sa.text('corrects_id IS NULL'), postgresql_where=sa.text('corrects_id IS NULL'))
    op.drop_index('ix_inpatient_round_records_stay_due', table_name='inpatient_round_records')
    op.drop_index(op.f('ix_inpatient_round_records_portal_id'), table_name='inpatient_round_records')
    op.drop_table('inpatient_round_records')
    op.drop_index(op.f('ix_inpatient_round_escalations_portal_id'), table_name='inpatient_round_escalations')
    op.drop_table('inpatient_round_escalations')
    op.drop_index(op.f('ix_inpatient_relative_notices_portal_id'), table_name='inpatient_relative_notices')
    op.drop_table('inpatient_relative_notices')
    op.drop_index('ix_inpatient_prescriptions_stay', table_name='inpatient_prescriptions')
    op.drop_index(op.f('ix_inpatient_prescriptions_portal_id'), table_name='inpatient_prescriptions')
    op.drop_table('inpatient_prescriptions')
    op.drop_index('ix_inpatient_examinations_stay', table_name='inpatient_examinations')
    op.drop_index(op.f('ix_inpatient_examinations_portal_id'), table_name='inpatient_examinations')
    op.drop_table('inpatient_examinations')
    op.drop_index('uq_inpatient_stays_current_deal', table_name='inpatient_stays', sqlite_where=sa.text("status <> 'discharged'"), postgresql_where=sa.text("status <> 'discharged'"))
    op.drop_index('uq_inpatient_stays_current_bed', table_name='inpatient_stays', sqlite_where=sa.text("status <> 'discharged'"), postgresql_where=sa.text("status <> 'discharged'"))
    op.drop_index(op.f('ix_inpatient_stays_portal_id'), table_name='inpatient_stays')
    op.drop_index('ix_inpatient_stays_building_status', table_name='inpatient_stays')
    op.drop_table('inpatient_stays')
    op.drop_index(op.f('ix_inpatient_wards_portal_id'), table_name='inpatient_wards')
    op.drop_table('inpatient_wards')
    op.drop_index(op.f('ix_inpatient_expected_arrivals_portal_id'), table_name='inpatient_expected_arrivals')
    op.drop_index('ix_inpatient_expected_arrivals_day', table_name='inpatient_expected_arrivals')
    op.drop_table('inpatient_expected_arrivals')
    op.drop_index(op.f('ix_inpatient_buildings_portal_id'), table_name='inpatient_buildings')
    op.drop_table('inpatient_buildings')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_api_keys_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_api_keys_role'), _OLD_ROLES)
