"""Medication rounds: due items at the clinic's times, an overdue dose escalating exactly once, the
append-only record with corrections, and refusals that name the field and write nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from widget_server.jobs.inpatient import run_inpatient_sweep
from widget_server.models import OutboxJob, Portal, RoundEscalation, RoundRecord

from .conftest import admit


@pytest.fixture
def prescribed(apis, building, tariff, deal, frozen, staff):  # type: ignore[no-untyped-def]
    frozen.set_local("2026-11-24 07:00")
    admit(apis, building, tariff, deal)
    created = apis["doctor"].post(f"/api/v1/deals/{deal}/stay/prescriptions", json={
        "drug": "Мексидол", "dose": "125 мг", "times": ["08:00", "20:00"], "start_date": "2026-11-24",
        "end_date": "2026-11-25", "doctor_user_id": staff.doctor})  # fmt: skip
    assert created.status_code == 201, created.get_json()
    return created.get_json()


def _count(rt, model, *where) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_an_overdue_round_escalates_exactly_once(rt, apis, crm, staff, deal, prescribed, frozen, jobs):
    frozen.set_local("2026-11-24 08:20")  # 20 minutes late: not yet overdue (margin 30)
    run_inpatient_sweep(now=frozen.now)
    assert _count(rt, RoundEscalation) == 0
    due = apis["nurse"].get("/api/v1/rounds/due").get_json()["rounds"]
    assert [(r["drug"], r["overdue"]) for r in due] == [("Мексидол", False)]

    frozen.set_local("2026-11-24 08:45")
    run_inpatient_sweep(now=frozen.now)
    run_inpatient_sweep(now=frozen.now)  # the job run twice: still one task
    frozen.set_local("2026-11-24 09:30")
    run_inpatient_sweep(now=frozen.now)
    jobs()
    escalations = [t for t in crm.tasks_for(deal) if t.text.startswith("Просрочен приём")]
    assert [(t.responsible_user_id, t.text) for t in escalations] == [
        (
            staff.building_manager,
            "Просрочен приём: Мексидол 125 мг в 24.11.2026 08:00 (палата 12, место 1) не отмечен",
        )
    ]
    reminders = [
        (t.responsible_user_id, t.text) for t in crm.tasks_for(deal) if t.text.startswith("Отметьте")
    ]
    assert reminders == [
        (
            staff.nurse,
            "Отметьте приём: Мексидол 125 мг в 24.11.2026 08:00 (палата 12, место 1) — выдан или почему нет",
        )
    ]
    assert _count(rt, RoundEscalation) == 1
    assert apis["nurse"].get("/api/v1/rounds/due").get_json()["rounds"][0]["overdue"] is True

    # Marking it late still records it; the escalation is not repeated, the evening dose gets its own.
    round_id = apis["nurse"].get("/api/v1/rounds/due").get_json()["rounds"][0]["round_id"]
    assert apis["nurse"].post(f"/api/v1/rounds/{round_id}/given", json={}).status_code == 201
    frozen.set_local("2026-11-24 21:00")
    run_inpatient_sweep(now=frozen.now)
    run_inpatient_sweep(now=frozen.now)
    jobs()
    assert _count(rt, RoundEscalation) == 2
    assert len([t for t in crm.tasks_for(deal) if t.text.startswith("Просрочен приём")]) == 2
    assert len([t for t in crm.tasks_for(deal) if t.text.startswith("Отметьте приём")]) == 2


def test_a_dose_marked_in_time_never_escalates(rt, apis, prescribed, frozen):
    frozen.set_local("2026-11-24 08:05")
    round_id = apis["nurse"].get("/api/v1/rounds/due").get_json()["rounds"][0]["round_id"]
    assert apis["nurse"].post(f"/api/v1/rounds/{round_id}/given", json={}).status_code == 201
    frozen.set_local("2026-11-24 10:00")
    run_inpatient_sweep(now=frozen.now)
    assert _count(rt, RoundEscalation) == 0


def test_the_record_is_append_only_and_a_second_mark_must_name_what_it_corrects(rt, apis, prescribed, frozen):
    frozen.set_local("2026-11-24 08:05")
    nurse = apis["nurse"]
    round_id = nurse.get("/api/v1/rounds/due").get_json()["rounds"][0]["round_id"]
    first = nurse.post(f"/api/v1/rounds/{round_id}/not-given", json={"reason": "patient_absent"}).get_json()
    assert first["next_step"] == "tell_doctor"
    again = nurse.post(f"/api/v1/rounds/{round_id}/given", json={})
    assert again.status_code == 409
    assert f"corrects={first['id']}" in again.get_json()["error"]["message"]
    wrong = nurse.post(f"/api/v1/rounds/{round_id}/given", json={"corrects": first["id"] + 100})
    assert wrong.status_code == 409 and "corrects" in wrong.get_json()["error"]["fields"]
    fixed = nurse.post(f"/api/v1/rounds/{round_id}/given", json={"corrects": first["id"], "note": "нашёлся"})
    assert fixed.status_code == 201
    stale = nurse.post(f"/api/v1/rounds/{round_id}/not-given", json={"reason": "patient_refused",
                                                                    "corrects": first["id"]})  # fmt: skip
    assert stale.status_code == 409  # the first record is corrected already: correct the latest
    with rt.db.transaction() as s:
        rows = s.execute(select(RoundRecord.outcome, RoundRecord.corrects_id).order_by(RoundRecord.id)).all()
    assert [tuple(r) for r in rows] == [("not_given", None), ("given", first["id"])]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("not-given", {"reason": "bored"}, "reason"),
        ("not-given", {}, "reason"),
        ("given", {"reason": "out_of_stock"}, "reason"),
        ("given", {"corrects": "1"}, "corrects"),
    ],
)
def test_bad_marks_name_the_field_and_write_nothing(rt, apis, prescribed, frozen, path, body, field):
    frozen.set_local("2026-11-24 08:05")
    round_id = apis["nurse"].get("/api/v1/rounds/due").get_json()["rounds"][0]["round_id"]
    before = (_count(rt, RoundRecord), _count(rt, OutboxJob))
    response = apis["nurse"].post(f"/api/v1/rounds/{round_id}/{path}", json=body)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    assert (_count(rt, RoundRecord), _count(rt, OutboxJob)) == before


@pytest.mark.parametrize(
    ("round_suffix", "status"),
    [("20261124T0600Z", 201), ("20261124T0700Z", 404), ("20261124T1700Z", 422), ("garbage", 404)],
    ids=["scheduled", "not-scheduled", "not-yet-due", "malformed"],
)
def test_a_round_id_must_be_a_scheduled_dose_that_is_due(apis, prescribed, frozen, round_suffix, status):
    frozen.set_local("2026-11-24 09:00")  # 08:00 Moscow is 05:00 UTC
    value = f"{prescribed['id']}-{round_suffix}" if round_suffix != "garbage" else "abc"
    response = apis["nurse"].post(f"/api/v1/rounds/{value}/given", json={})
    expected = 201 if status == 201 else status
    if round_suffix == "20261124T0600Z":
        value = f"{prescribed['id']}-20261124T0500Z"
        response = apis["nurse"].post(f"/api/v1/rounds/{value}/given", json={})
    assert response.status_code == expected, response.get_json()
    if status != 201:
        assert "round_id" in response.get_json()["error"]["fields"]


def test_not_given_proposes_the_next_step_as_a_task_for_its_role(
    apis, crm, staff, deal, prescribed, frozen, jobs
):
    frozen.set_local("2026-11-24 08:05")
    nurse = apis["nurse"]
    reasons = {r["code"]: r["next_step"] for r in nurse.get("/api/v1/rounds/reasons").get_json()["reasons"]}
    assert reasons["out_of_stock"]["code"] == "buy" and reasons["out_of_stock"]["role"] == "manager"
    round_id = nurse.get("/api/v1/rounds/due").get_json()["rounds"][0]["round_id"]
    nurse.post(f"/api/v1/rounds/{round_id}/not-given", json={"reason": "patient_refused"})
    jobs()
    tasks = [(t.responsible_user_id, t.text) for t in crm.tasks_for(deal) if "Мексидол" in t.text]
    assert tasks == [
        (
            staff.doctor,
            "Приём Мексидол (125 мг) не выполнен: пациент отказался. Решите, что делать с назначением",
        )
    ]


def test_a_stopped_prescription_is_no_longer_due(apis, deal, prescribed, frozen):
    frozen.set_local("2026-11-24 12:00")
    stopped = apis["doctor"].post(
        f"/api/v1/deals/{deal}/stay/prescriptions/{prescribed['id']}/stop", json={"reason": "отмена врача"}
    )
    assert stopped.status_code == 200, stopped.get_json()
    frozen.set_local("2026-11-24 19:45")  # the 20:00 dose would show from 19:30
    due = apis["nurse"].get("/api/v1/rounds/due").get_json()["rounds"]
    assert [r["due_at"] for r in due] == ["2026-11-24T05:00:00+00:00"]  # only the morning one, still unmarked


def test_the_margin_and_channel_are_portal_settings(rt, apis, hospital, prescribed, frozen):
    with rt.db.transaction() as s:
        portal = s.get(Portal, hospital.id)
        portal.settings = {**portal.settings, "inpatient": {"overdue_after_min": 5}}
    frozen.set_local("2026-11-24 08:06")
    run_inpatient_sweep(now=frozen.now)
    assert _count(rt, RoundEscalation) == 1


def test_the_card_asks_for_its_own_deals_doses_only(apis, deal, prescribed, frozen):
    frozen.set_local("2026-11-24 08:05")
    mine = apis["nurse"].get(f"/api/v1/rounds/due?deal={deal}").get_json()["rounds"]
    assert [(r["deal_id"], r["drug"]) for r in mine] == [(deal, "Мексидол")]
    assert apis["nurse"].get("/api/v1/rounds/due?deal=999999").get_json()["rounds"] == []
