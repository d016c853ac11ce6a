from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from connectors.types import Appointment, AppointmentBatch
from widget_server import clock
from widget_server.appointments.settings import SEED002_TEMPLATE
from widget_server.appointments.sync import ingest, start_run
from widget_server.journey import Catalogue, install_templates, update_rule
from widget_server.models import JourneyRule, MisAppointment, Portal, RuleFiring
from widget_server.sandbox.crm import SandboxCrm

JOURNEY_SETTINGS = {
    "brand": "Улыбка",
    "clinic_phone": "+7 495 000-00-00",
    "review_links": [
        "https://yandex.ru/maps/org/ulybka",
        "https://2gis.ru/ulybka",
        "https://prodoctorov.ru/ulybka",
    ],
    "message_field_id": "Сообщение пациенту",
    "loss_reason_field_id": "Причина отказа",
    "complex_treatment_pipelines": ["Реализация комплексного лечения"],
    "tag_field_id": "Теги",
}


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
        monkeypatch.setattr(clock, "now_utc", lambda: self.now)

    def set(self, moment: datetime) -> None:
        self.now = moment.astimezone(UTC)


@pytest.fixture
def frozen(monkeypatch) -> Clock:
    return Clock(monkeypatch)


def make_clinic(make_portal, rt, slug: str, timezone: str) -> Portal:
    portal = make_portal(slug=slug, timezone=timezone)
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        row.settings = {**row.settings, "mis": SEED002_TEMPLATE, "journey": JOURNEY_SETTINGS}
    return portal


@pytest.fixture
def crm_users(rt):
    def seed(portal: Portal) -> dict[str, str]:
        crm = SandboxCrm(rt.db, portal.id, timezone=portal.timezone)
        users = {
            role: crm.seed_user(name, email=f"{role}@example.ru").id
            for role, name in (
                ("head", "Главврач"),
                ("administrator", "Администратор"),
                ("curator", "Куратор"),
            )
        }
        with rt.db.transaction() as s:
            row = s.get(Portal, portal.id)
            row.settings = {**row.settings, "journey": {**row.settings["journey"], "roles": users}}
        return users

    return seed


def enable_templates(rt, portal: Portal, *keys: str) -> None:
    """Install the seed templates and enable those whose key starts with one of `keys` (confirm_d1's
    call-task variant only when named: enabled beside the message it would only add skipped occurrences)."""
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        install_templates(s, row, "test")
        for rule in s.scalars(select(JourneyRule).where(JourneyRule.portal_id == portal.id)):
            if rule.key == "confirm_d1.call" and rule.key not in keys:
                continue
            if any(rule.key == k or rule.key.startswith(k + ".") for k in keys):
                update_rule(s, row, rule, {"enabled": True}, "test", Catalogue())


def visit(tz: ZoneInfo, source_id: str, patient: str, start: datetime, **changes: object) -> Appointment:
    base = Appointment(
        source="ident_db",
        source_id=source_id,
        status="booked",
        starts_at=start,
        ends_at=None,
        patient_id=patient,
        patient_name=f"Пациент {patient} Тестович",
        patient_phone=f"+7 916 000-00-{int(patient) % 100:02d}",
        changed_at=datetime(2026, 1, 1, tzinfo=tz),
        doctor_id="17",
        doctor_name="Смирнов Игорь Петрович",
        specialty="терапия",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def sync(rt, portal: Portal, *appointments: Appointment) -> None:
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        ingest(s, row, start_run(s, row, "ident_db"), AppointmentBatch(tuple(appointments), (), None))


def deal_of(rt, source_id: str) -> str:
    with rt.db.transaction() as s:
        deal_id = s.scalar(select(MisAppointment.deal_id).where(MisAppointment.source_id == source_id))
    assert deal_id is not None
    return deal_id


def firings(rt, portal_id: int, **where: object) -> list[RuleFiring]:
    with rt.db.transaction() as s:
        query = select(RuleFiring).where(RuleFiring.portal_id == portal_id)
        for key, value in where.items():
            query = query.where(getattr(RuleFiring, key) == value)
        rows = list(s.scalars(query.order_by(RuleFiring.id)))
        s.expunge_all()
        return rows


def count(rt, model) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0
