"""Caller identification from our database alone: a family on one phone, visits, open deals, unknown and
invalid numbers, and the three-query bound."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from widget_server import clock
from widget_server.callers import CallerInvalid, lookup_callers
from widget_server.models import MisAppointment, MisLead, Portal

from ..reports.clinic_data import msk

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(clock, "now_utc", lambda: NOW)


def _family(rt, clinic) -> dict[str, int]:  # type: ignore[no-untyped-def]
    mother = clinic.patient("Смирнова Анна Петровна", phone="+79161234567")
    son = clinic.patient("Смирнов Пётр Игоревич", phone="+79161234567")
    clinic.patient("Соседка Ольга", phone="+79167654321")
    old = clinic.visit(mother, msk(2026, 3, 12, 10), doctor_name="Иванов И.И.", card_number="A-17",
                       deal_id="D1")  # fmt: skip
    clinic.visit(mother, msk(2026, 10, 2, 10), status="no_show", doctor_name="Петров П.П.", deal_id="D2")
    clinic.visit(mother, msk(2026, 12, 1, 11), status="booked", doctor_name="Иванов И.И.", deal_id="D3")
    clinic.visit(son, msk(2026, 11, 30, 9), status="cancelled", doctor_name="Детский", deal_id="D4")
    clinic.visit(son, msk(2026, 12, 5, 9), status="confirmed", doctor_name="Детский", card_number="B-2",
                 deal_id="D5")  # fmt: skip
    with rt.db.transaction() as s:
        stages = {
            "D1": {"pipeline_id": "Первичный приём", "stage_id": "won"},
            "D2": {"pipeline_id": "Повторный приём", "stage_id": "lost", "loss_reason": "Не пришёл"},
            "D3": {"pipeline_id": "Повторный приём", "stage_id": "Записан на приём"},
            "D4": {"pipeline_id": "Первичный приём", "stage_id": "lost"},
            "D5": {"pipeline_id": "Первичный приём", "stage_id": "Записан на приём"},
        }
        for row in s.scalars(select(MisAppointment)):
            row.target = stages[row.deal_id]
        s.add(MisLead(portal_id=clinic.portal.id, deal_id="L9", lead_created_at=msk(2026, 11, 22, 18),
                      name="Анна", phone_e164="+79161234567"))  # fmt: skip
    return {"mother": mother, "son": son, "old": old}


def test_a_family_on_one_phone(rt, clinic, statements) -> None:  # type: ignore[no-untyped-def]
    ids = _family(rt, clinic)
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.portal.id)
        with statements() as seen:
            found = lookup_callers(s, portal, "8 (916) 123-45-67")
    assert len(seen) <= 3
    assert found["phone"] == "+79161234567"
    by_name = {m["name"]: m for m in found["matches"]}
    assert set(by_name) == {"Смирнова Анна Петровна", "Смирнов Пётр Игоревич"}
    mother = by_name["Смирнова Анна Петровна"]
    assert mother["patient_id"] == ids["mother"]
    assert mother["card_number"] == "A-17"
    assert mother["shared_phone"] is True
    assert (mother["last_visit"]["date"], mother["last_visit"]["doctor"], mother["last_visit"]["status"]) == (
        "2026-10-02", "Петров П.П.", "no_show",
    )  # fmt: skip
    assert (mother["next_visit"]["starts_at"], mother["next_visit"]["status"]) == (
        "2026-12-01T11:00+03:00",
        "booked",
    )
    assert mother["open_deals"] == [
        {"deal_id": "D3", "pipeline": "Повторный приём", "stage": "Записан на приём"}
    ]
    son = by_name["Смирнов Пётр Игоревич"]
    # A cancelled visit is not the next one; the confirmed one after it is.
    assert (son["last_visit"], son["next_visit"]["date"], son["card_number"]) == (None, "2026-12-05", "B-2")
    assert [d["deal_id"] for d in son["open_deals"]] == ["D5"]
    assert [lead["deal_id"] for lead in found["open_leads"]] == ["L9"]


def test_the_query_count_does_not_grow_with_history(rt, clinic, statements) -> None:  # type: ignore[no-untyped-def]
    for i in range(6):
        patient = clinic.patient(f"Член семьи {i}", phone="+79161234567")
        for month in range(1, 10):
            clinic.visit(patient, msk(2026, month, 10, 10), deal_id=f"D{i}-{month}")
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.portal.id)
        with statements() as seen:
            found = lookup_callers(s, portal, "+7 916 123 45 67")
    assert len(found["matches"]) == 6
    assert len(seen) == 1  # patients, their visits and the open leads in one union (the issue allows 3)


def test_unknown_number_is_no_match(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    _family(rt, clinic)
    with rt.db.transaction() as s:
        found = lookup_callers(s, s.get(Portal, clinic.portal.id), "+7 495 000-00-01")
    assert found == {"phone": "+74950000001", "matches": [], "open_leads": []}


@pytest.mark.parametrize("phone", ["", "12", "+7 (888) 888-88-88", "не номер", None, "9" * 50])
def test_a_bad_phone_is_refused(rt, portal, phone) -> None:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s, pytest.raises(CallerInvalid) as caught:
        lookup_callers(s, s.get(Portal, portal.id), phone)
    assert caught.value.field == "phone"


def test_another_portals_patients_are_invisible(rt, clinic, make_portal) -> None:  # type: ignore[no-untyped-def]
    _family(rt, clinic)
    other = make_portal(slug="other")
    with rt.db.transaction() as s:
        assert lookup_callers(s, s.get(Portal, other.id), "+79161234567")["matches"] == []


def test_a_second_mis_id_folds_in_and_a_patient_without_visits_is_listed(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    first = clinic.patient("Смирнова Анна Петровна")
    second = clinic.patient("Смирнова Анна", alias_of_id=first)
    newcomer = clinic.patient("Смирнова Мария")
    clinic.visit(second, msk(2026, 3, 12, 10), doctor_name="Иванов И.И.", card_number="A-17")
    with rt.db.transaction() as s:
        found = lookup_callers(s, s.get(Portal, clinic.portal.id), "+79161234567")
    by_id = {m["patient_id"]: m for m in found["matches"]}
    assert set(by_id) == {first, newcomer}
    assert by_id[newcomer] == {
        "patient_id": newcomer, "name": "Смирнова Мария", "card_number": None, "matched_phone": "primary",
        "shared_phone": True, "last_visit": None, "next_visit": None, "open_deals": [],
    }  # fmt: skip
