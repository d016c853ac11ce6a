"""How a visit reads in the CRM: its feed note, and the deal fields the admin mapped (`mis.field_map`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from connectors.types import FieldValue

from ...money import minor_to_decimal

__all__ = ["STATUS_LABELS", "appointment_note", "deal_fields", "jsonable_fields", "short_name"]


STATUS_LABELS = {
    "requested": "Заявка",
    "booked": "Записан на приём",
    "confirmed": "Подтвердил запись",
    "arrived": "Пришёл",
    "completed": "Посетил клинику",
    "cancelled": "Отменил запись",
    "no_show": "Не пришёл",
    "void": "Удалено в МИС",
}


def short_name(full: str | None) -> str:
    """«Смирнов Игорь Петрович» → «Смирнов И. П.»."""
    parts = (full or "").split()
    if not parts:
        return "врач не указан"
    return " ".join([parts[0], *(f"{p[0]}." for p in parts[1:3])])


def _specialty(doc: dict[str, Any], doctor_map: dict[str, Any] | None) -> str | None:
    """The MIS's, else the one the admin set for that doctor."""
    mapped = ((doctor_map or {}).get(str(doc.get("doctor_id"))) or {}).get("specialty")
    return doc.get("specialty") or mapped


def appointment_note(
    doc: dict[str, Any], status: str, timezone: str, doctor_map: dict[str, Any] | None = None
) -> str:
    """«Запись 12.03.2026 10:00, Смирнов И. П. (терапия): Посетил клинику»."""
    starts = datetime.fromisoformat(doc["starts_at"]).astimezone(ZoneInfo(timezone))
    doctor = short_name(doc.get("doctor_name"))
    specialty = _specialty(doc, doctor_map)
    if specialty:
        doctor = f"{doctor} ({specialty})"
    return f"Запись {starts:%d.%m.%Y %H:%M}, {doctor}: {STATUS_LABELS.get(status, status)}"


def deal_fields(
    doc: dict[str, Any],
    status: str,
    *,
    timezone: str,
    currency: str,
    field_map: Mapping[str, str],
    doctor_map: dict[str, Any] | None = None,
) -> dict[str, FieldValue]:
    """The visit facts the admin mapped (`mis.field_map`) by CRM field id; a missing fact clears its field."""
    if not field_map:
        return {}
    starts = datetime.fromisoformat(doc["starts_at"]).astimezone(ZoneInfo(timezone))
    amount = doc.get("amount_minor")
    facts: dict[str, FieldValue] = {
        "visit_at": f"{starts:%d.%m.%Y %H:%M}",
        "visit_date": starts.date(),
        "doctor": short_name(doc["doctor_name"]) if doc.get("doctor_name") else None,
        "specialty": _specialty(doc, doctor_map),
        "branch": doc.get("branch"),
        "status": STATUS_LABELS.get(status, status),
        "card_number": doc.get("card_number"),
        "amount": None if amount is None else str(minor_to_decimal(int(amount), currency)),
    }
    return {field_id: facts[key] for key, field_id in field_map.items() if key in facts}


def jsonable_fields(fields: Mapping[str, FieldValue]) -> dict[str, Any]:
    """As the outbox's `update_deal_fields` payload reads them back (`{"date": …}`, lists for tuples)."""
    return {
        k: {"date": v.isoformat()} if isinstance(v, date) else list(v) if isinstance(v, tuple) else v
        for k, v in fields.items()
    }
