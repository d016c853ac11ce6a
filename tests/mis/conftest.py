from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from connectors.types import Appointment, AppointmentBatch
from widget_server.appointments.settings import SEED002_TEMPLATE
from widget_server.appointments.sync import SyncResult, ingest, start_run
from widget_server.models import Portal
from widget_server.sandbox.crm import SandboxCrm

MSK = ZoneInfo("Europe/Moscow")


def visit(source_id: str = "R1", **changes: object) -> Appointment:
    base = Appointment(
        source="ident_db",
        source_id=source_id,
        status="booked",
        starts_at=datetime(2026, 3, 12, 10, 0, tzinfo=MSK),
        ends_at=datetime(2026, 3, 12, 10, 45, tzinfo=MSK),
        patient_id="4401",
        patient_name="Смирнова Анна Петровна",
        patient_phone="+7 916 123-45-67",
        changed_at=datetime(2026, 3, 5, 18, 0, tzinfo=MSK),
        doctor_id="17",
        doctor_name="Смирнов Игорь Петрович",
        specialty="терапия",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def clinic(make_portal, rt) -> Portal:
    portal = make_portal(slug="dental")
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        row.settings = {**row.settings, "mis": SEED002_TEMPLATE}
    return portal


@pytest.fixture
def crm(rt, clinic) -> SandboxCrm:
    crm = SandboxCrm(rt.db, clinic.id, timezone=clinic.timezone)
    crm.seed_user("Ольга Иванова", email="olga@example.ru")
    return crm


@pytest.fixture
def sync(rt, clinic):
    def run(*appointments: Appointment, batch: AppointmentBatch | None = None) -> SyncResult:
        with rt.db.transaction() as s:
            portal = s.get(Portal, clinic.id)
            batch = batch or AppointmentBatch(tuple(appointments), (), None)
            run_row = start_run(s, portal, "ident_db")
            return ingest(s, portal, run_row, batch)

    return run
