"""Seed 002 (amoCRM + IDENT) as the clinic lives it, on the sandbox CRM: a site lead goes to IDENT as a
ticket, the booking IDENT records moves that same deal, completion closes the visit, the next booking is a
repeat visit, an invalid number is flagged, and two leads from two numbers of one patient are one patient."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from connectors.mis_ident.readers import map_rows
from connectors.types import NewContact, NewDeal, StageRef
from widget_server.appointments.tickets import offer_lead
from widget_server.appointments.timetable import issue_ident_key
from widget_server.models import MisAppointment, MisPatient, MisSyncRecord, Portal

from .conftest import MSK

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ident"
TEMPLATE = json.loads((FIXTURES / "receptions.json").read_text(encoding="utf-8"))[0]
NEW_LEAD = StageRef("Первичный приём", "Новая заявка")


def reception(**changes: object) -> dict:
    return {**TEMPLATE, **changes}


def _lead(rt, crm, clinic, name: str, phone: str, at: datetime, form: str) -> str:
    contact = crm.create_contact(NewContact(name, phones=(phone,)), idempotency_key=f"contact-{phone}")
    deal = crm.create_deal(
        NewDeal(name=f"Заявка: {name}", stage=NEW_LEAD, contact_ids=(contact.id,)),
        idempotency_key=f"deal-{phone}",
    )
    with rt.db.transaction() as s:
        offer_lead(
            s,
            s.get(Portal, clinic.id),
            deal_id=deal.id,
            created_at=at,
            name=name,
            phone=phone,
            form_name=form,
        )
    return deal.id


def _appointment(rt, source_id: str) -> MisAppointment:
    with rt.db.transaction() as s:
        row = s.scalar(select(MisAppointment).where(MisAppointment.source_id == source_id))
        s.expunge(row)
        return row


def test_seed002_ident_story(rt, client, clinic, crm, sync, jobs):
    with rt.db.transaction() as s:
        key = issue_ident_key(s.get(Portal, clinic.id))

    def ident_sync(*rows: dict):
        return sync(batch=map_rows(rows, tz=MSK, no_show_reasons={"8"}, cursor=None))

    # A site lead waits in «Новая заявка»; IDENT pulls it as a ticket.
    site_deal = _lead(
        rt,
        crm,
        clinic,
        "Смирнова Анна Петровна",
        "+79161234567",
        datetime(2026, 3, 5, 17, 0, tzinfo=MSK),
        "Сайт",
    )
    tickets = client.get(
        "/mis/ident/dental/GetTickets",
        query_string={"dateTimeFrom": "2026-03-05T00:00:00+03:00", "dateTimeTo": "2026-03-06T00:00:00+03:00"},
        headers={"IDENT-Integration-Key": key},
    ).get_json()
    assert [(t["Id"], t["ClientPhone"]) for t in tickets] == [(f"cb-{site_deal}", "+79161234567")]

    # The administrator books her in IDENT: the same deal moves, with doctor and time in the feed.
    ident_sync(reception())
    jobs()
    assert _appointment(rt, "90001").deal_id == site_deal
    assert crm.get_deal(site_deal).stage == StageRef("Первичный приём", "Записан на приём")
    assert (
        crm.notes_for(site_deal)[-1] == "Запись 12.03.2026 10:00, Смирнов И. П. (терапия): Записан на приём"
    )

    # «Завершён» in IDENT: the visit took place.
    ident_sync(
        reception(
            ReceptionEnded="2026-03-12 10:44:00", DateTimeChanged="2026-03-12 10:45:00", RowVersion="1010"
        )
    )
    jobs()
    assert crm.get_deal(site_deal).stage == StageRef("Первичный приём", "Посетил клинику")

    # Her next booking is a repeat visit: a new deal in «Повторный приём».
    ident_sync(reception(ID=90010, PlanStart="2026-04-02 09:00:00", PlanEnd="2026-04-02 09:30:00",
                         DateTimeChanged="2026-03-12 10:50:00", RowVersion="1011"))  # fmt: skip
    jobs()
    repeat = _appointment(rt, "90010")
    assert repeat.kind == "repeat" and repeat.deal_id not in (None, site_deal)
    assert crm.get_deal(repeat.deal_id).stage == StageRef("Повторный приём", "Записан на приём")

    # A patient whose number cannot exist is imported, and flagged on the deal and in the log.
    result = ident_sync(
        reception(ID=90020, ID_Patients=4420, PatientSurname="Павлов", PatientName="Денис",
                  PatientMobilePhone="+7 (888) 888-88-88", DateTimeChanged="2026-03-12 11:00:00")
    )  # fmt: skip
    assert result.counts["invalid_phone"] == 1
    jobs()
    flagged = _appointment(rt, "90020")
    assert flagged.flags == ["invalid_phone"]
    assert "Телефон пациента в МИС недействителен: +7 (888) 888-88-88" in crm.notes_for(flagged.deal_id)

    # A WhatsApp lead and a call lead from her two numbers: IDENT knows one patient with both numbers.
    whatsapp = _lead(
        rt, crm, clinic, "Морозова Ирина", "+79031234567", datetime(2026, 3, 9, 12, 0, tzinfo=MSK), "WhatsApp"
    )
    call = _lead(
        rt, crm, clinic, "Морозова Ирина", "+74951234567", datetime(2026, 3, 10, 15, 0, tzinfo=MSK), "Звонок"
    )
    ident_sync(
        reception(ID=90030, ID_Patients=4430, PatientSurname="Морозова", PatientName="Ирина",
                  PatientPatronymic="Викторовна", PatientMobilePhone="+7 903 123-45-67",
                  PatientPhone="+7 495 123-45-67", DateTimeChanged="2026-03-11 09:00:00")
    )  # fmt: skip
    jobs()
    with rt.db.transaction() as s:
        assert s.scalars(select(MisPatient.id).where(MisPatient.source_patient_id == "4430")).all() != []
        assert len(s.scalars(select(MisPatient).where(MisPatient.name_key == "морозова ирина")).all()) == 1
    booked = _appointment(rt, "90030")
    assert booked.deal_id == whatsapp  # the older contact's inquiry continues
    assert crm.get_deal(whatsapp).stage == StageRef("Первичный приём", "Записан на приём")
    assert [t.text.split(":")[0] for t in crm.tasks_for(call)] == ["Проверить дубль"]
    assert any("проверьте дубль" in n for n in crm.notes_for(call))
    assert crm.get_deal(call).stage == NEW_LEAD  # nothing closed or deleted on the newer contact's deal
    with rt.db.transaction() as s:
        outcomes = s.scalars(select(MisSyncRecord.outcome)).all()
    assert outcomes.count("created") == 4
