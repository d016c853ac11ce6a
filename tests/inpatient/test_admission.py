"""Admission, occupancy, relatives and examinations: refusals name the field and write nothing; the
representative is told by a task when no channel is mapped, and not at all without consent."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from widget_server.models import InpatientStay, OutboxJob, RelativeNotice, StayAccount

from .conftest import admit


def _rows(rt) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(m)) for m in (InpatientStay, StayAccount, OutboxJob)
        )


def _body(building, tariff, changes=None):  # type: ignore[no-untyped-def]
    body = {
        "building": building["id"],
        "ward": building["wards"][0]["id"],
        "bed": 1,
        "tariff": tariff,
        "representative": {"name": "Петрова Ольга", "phone": "+7 916 123-45-67", "consent_to_inform": True},
    }
    body.update(changes or {})
    return body


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"bed": 3}, "bed"),
        ({"bed": 0}, "bed"),
        ({"ward": 99999}, "ward"),
        ({"building": 99999}, "building"),
        ({"building": None}, "building"),
        ({"tariff": 99999}, "tariff_id"),
        ({"bed": "1"}, "bed"),
        ({"representative": {"name": "Петрова", "phone": "12"}}, "representative.phone"),
        ({"representative": {"name": "Петрова", "email": "not-mail"}}, "representative.email"),
        ({"representative": {"phone": "+79161234567"}}, "representative.name"),
    ],
)
def test_bad_admissions_name_the_field_and_write_nothing(
    rt, apis, building, tariff, deal, frozen, changes, field
):
    frozen.set_local("2026-11-24 11:00")
    body = _body(building, tariff, changes)
    if body.get("building") is None:
        body.pop("building")
    before = _rows(rt)
    response = apis["staff"].post(f"/api/v1/deals/{deal}/stay/admission", json=body)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    assert _rows(rt) == before


def test_an_unmapped_profile_is_refused(rt, apis, building, tariff, deal, frozen):
    frozen.set_local("2026-11-24 11:00")
    body = _body(building, tariff, {"profile": "cardiology"})
    body.pop("building")
    response = apis["staff"].post(f"/api/v1/deals/{deal}/stay/admission", json=body)
    assert response.status_code == 422
    assert "cardiology" in response.get_json()["error"]["fields"]["profile"][0]


def test_a_taken_bed_is_a_conflict_and_opens_no_account(rt, apis, crm, staff, building, tariff, deal, frozen):
    from connectors.types import NewDeal, StageRef

    frozen.set_local("2026-11-24 11:00")
    admit(apis, building, tariff, deal)
    other = crm.create_deal(
        NewDeal(name="Сидоров", stage=StageRef("sales", "ready_to_sign")), idempotency_key="d2"
    )
    before = _rows(rt)
    response = apis["staff"].post(f"/api/v1/deals/{other.id}/stay/admission", json=_body(building, tariff))
    assert response.status_code == 409
    assert "bed" in response.get_json()["error"]["fields"]
    assert _rows(rt) == before
    again = apis["staff"].post(
        f"/api/v1/deals/{deal}/stay/admission", json=_body(building, tariff, {"bed": 2})
    )
    assert again.status_code == 409 and "deal_id" in again.get_json()["error"]["fields"]


def test_a_viewer_cannot_admit(rt, apis, building, tariff, deal, frozen):
    before = _rows(rt)
    response = apis["viewer"].post(f"/api/v1/deals/{deal}/stay/admission", json=_body(building, tariff))
    assert response.status_code == 403
    assert _rows(rt) == before


def test_without_a_channel_the_manager_gets_a_task_to_tell_the_representative(
    rt, apis, crm, staff, building, tariff, deal, frozen, jobs
):
    frozen.set_local("2026-11-24 11:00")
    admit(apis, building, tariff, deal)
    jobs()
    tasks = [(t.responsible_user_id, t.text) for t in crm.tasks_for(deal) if t.text.startswith("Сообщите")]
    assert tasks == [
        (
            staff.manager,
            "Сообщите представителю Петрова Ольга (дочь), +79161234567: "
            "Пациент размещён: Корпус 1, палата 12. Дата поступления 24.11.2026.",
        )
    ]
    assert crm.messages_for(deal) == []
    assert any(
        n.startswith("Менеджеру поставлена задача сообщить представителю") for n in crm.notes_for(deal)
    )


def test_without_consent_the_representative_is_not_messaged(
    rt, apis, crm, building, tariff, deal, frozen, jobs
):
    frozen.set_local("2026-11-24 11:00")
    admit(apis, building, tariff, deal, consent=False)
    jobs()
    assert not [t for t in crm.tasks_for(deal) if t.text.startswith("Сообщите")]
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(RelativeNotice)) == 0


def test_occupancy_by_building_and_day(apis, crm, building, tariff, deal, frozen):
    from connectors.types import NewDeal, StageRef

    frozen.set_local("2026-11-25 11:00")
    admit(apis, building, tariff, deal, date="2026-11-24")
    second = crm.create_deal(
        NewDeal(name="Сидоров", stage=StageRef("sales", "ready_to_sign")), idempotency_key="d2"
    )
    admit(apis, building, tariff, second.id, ward=1, bed=1, date="2026-11-25")
    apis["staff"].post(f"/api/v1/deals/{deal}/stay/discharge-request", json={"discharge_date": "2026-11-27"})
    response = apis["viewer"].get("/api/v1/buildings/occupancy?date=2026-11-23&days=6")
    assert response.status_code == 403  # viewers see no stays
    body = apis["staff"].get("/api/v1/buildings/occupancy?date=2026-11-23&days=6").get_json()
    (corpus,) = body["buildings"]
    assert (corpus["name"], corpus["beds"]) == ("Корпус 1", 3)
    assert [(d["date"][-2:], d["taken"], d["free"]) for d in corpus["days"]] == [
        ("23", 0, 3),
        ("24", 1, 2),
        ("25", 2, 1),
        ("26", 2, 1),
        ("27", 1, 2),
        ("28", 1, 2),
    ]
    bad = apis["staff"].get("/api/v1/buildings/occupancy?date=2026-11-23&days=400")
    assert bad.status_code == 422 and "days" in bad.get_json()["error"]["fields"]


def test_an_examination_needs_a_doctor_of_the_clinic(rt, apis, staff, building, tariff, deal, frozen):
    frozen.set_local("2026-11-24 11:00")
    admit(apis, building, tariff, deal)
    before = _rows(rt)
    response = apis["doctor"].post(f"/api/v1/deals/{deal}/stay/examinations", json={
        "doctor_user_id": staff.nurse, "examined_on": "2026-11-24", "results": "—"})  # fmt: skip
    assert response.status_code == 422
    assert "doctor_user_id" in response.get_json()["error"]["fields"]
    assert _rows(rt) == before
    doctors = apis["staff"].get("/api/v1/doctors").get_json()["doctors"]
    assert doctors == [{"user_id": staff.doctor, "name": "Игорь Врачев"}]


def test_documents_before_a_discharge_request_are_a_conflict(apis, building, tariff, deal, frozen):
    frozen.set_local("2026-11-24 11:00")
    admit(apis, building, tariff, deal)
    response = apis["finance"].post(f"/api/v1/deals/{deal}/stay/discharge-documents", json={})
    assert response.status_code == 409
    assert apis["nurse"].post(f"/api/v1/deals/{deal}/stay/discharge-documents", json={}).status_code == 403
