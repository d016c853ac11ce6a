"""report columns: a visit's doctor, specialty, branch, card number, booker, channel and waiting-list flag as
columns copied from its document, so reports group by them (from a covering index) and the caller pop-up
reads them without JSON

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 01:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_TEXT = ('doctor_name', 'specialty', 'branch', 'card_number', 'booked_by', 'channel')


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('mis_appointments', schema=None) as batch_op:
        for name in _TEXT:
            batch_op.add_column(sa.Column(name, sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('waiting_list', sa.Boolean(), server_default=sa.false(), nullable=False))
    # Backfill as models.appointments.doc_columns does: trimmed text, blank as NULL.
    if op.get_bind().dialect.name == 'postgresql':
        texts = ', '.join(f"{n} = NULLIF(BTRIM(doc ->> '{n}'), '')" for n in _TEXT)
        waiting = "COALESCE(jsonb_typeof(doc -> 'waiting_list') = 'boolean' AND (doc ->> 'waiting_list')::boolean, false)"
    else:
        texts = ', '.join(f"{n} = NULLIF(TRIM(json_extract(doc, '$.{n}')), '')" for n in _TEXT)
        waiting = "COALESCE(json_extract(doc, '$.waiting_list') IN (1, 'true'), 0)"
    op.execute(f'UPDATE mis_appointments SET {texts}, waiting_list = {waiting}')
    with op.batch_alter_table('mis_appointments', schema=None) as batch_op:
        batch_op.create_index(
            'ix_mis_appointments_report',
            ['portal_id', 'starts_at', 'status', 'patient_id', 'specialty', 'doctor_name', 'branch', 'channel'],
            unique=False,
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('mis_appointments', schema=None) as batch_op:
        batch_op.drop_index('ix_mis_appointments_report')
        batch_op.drop_column('waiting_list')
        for name in reversed(_TEXT):
            batch_op.drop_column(name)
