"""The round record of a stay as CSV for Russian Excel (semicolons, BOM): a medical record, so only the
medical roles may download it."""

from __future__ import annotations

import csv
import io
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import InpatientStay, Portal, Prescription, RoundRecord
from .catalogue import NEXT_STEPS, REASONS

__all__ = ["round_records", "rounds_csv"]


def round_records(session: Session, stay: InpatientStay) -> list[tuple[RoundRecord, Prescription]]:
    return [
        (record, prescription)
        for record, prescription in session.execute(
            select(RoundRecord, Prescription)
            .join(Prescription, Prescription.id == RoundRecord.prescription_id)
            .where(RoundRecord.stay_id == stay.id)
            .order_by(RoundRecord.due_at, RoundRecord.id)
        )
    ]


def rounds_csv(session: Session, portal: Portal, stay: InpatientStay) -> str:
    zone = ZoneInfo(portal.timezone)
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(
        ["№", "Время приёма", "Препарат", "Доза", "Отметка", "Причина", "Следующий шаг", "Исправляет №",
         "Комментарий", "Кто", "Когда отмечено"]
    )  # fmt: skip
    for record, prescription in round_records(session, stay):
        writer.writerow(
            [
                record.id,
                record.due_at.astimezone(zone).strftime("%d.%m.%Y %H:%M"),
                prescription.drug,
                prescription.dose,
                "выдан" if record.outcome == "given" else "не выдан",
                REASONS[record.reason].title_ru if record.reason in REASONS else "",
                NEXT_STEPS[record.next_step].title_ru if record.next_step in NEXT_STEPS else "",
                record.corrects_id or "",
                record.note or "",
                record.actor,
                record.recorded_at.astimezone(zone).strftime("%d.%m.%Y %H:%M"),
            ]
        )
    return buffer.getvalue()
