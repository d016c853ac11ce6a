"""Seed 002's patient journey end to end on the sandbox CRM (Europe/Moscow): booking, confirmation a day
ahead and the call task when the patient is silent, NPS the day after a visit, hygiene recall six months on,
and the head's check of a lost deal."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from connectors.types import DealUpdated, StageRef
from widget_server.jobs.journey import journey_on_deal_event, sweep_portal
from widget_server.journey import record_answer
from widget_server.models import JourneyRule, Portal, RuleFiring
from widget_server.sandbox.crm import SandboxCrm

from .conftest import deal_of, enable_templates, firings, make_clinic, sync, visit

MSK = ZoneInfo("Europe/Moscow")


def _rule_id(rt, portal_id: int, key: str) -> int:
    with rt.db.transaction() as s:
        return s.scalar(
            select(JourneyRule.id).where(JourneyRule.portal_id == portal_id, JourneyRule.key == key)
        )


def _fired(rt, portal_id: int, key: str) -> list[RuleFiring]:
    return firings(rt, portal_id, rule_id=_rule_id(rt, portal_id, key), state="fired")


def _answer(rt, portal_id: int, deal_id: str, kind: str, value: str, frozen) -> None:
    with rt.db.transaction() as s:
        record_answer(s, s.get(Portal, portal_id), deal_id, kind, value, "api", frozen.now)
    sweep_portal(portal_id)


def test_seed002_journey_story(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "smile", "Europe/Moscow")
    users = crm_users(clinic)
    enable_templates(rt, clinic, "confirm_d1", "nps", "hygiene_recall", "lost_review")
    crm = SandboxCrm(rt.db, clinic.id, timezone="Europe/Moscow")
    doctor = crm.seed_user("Смирнов Игорь Петрович", email="doctor@example.ru").id

    # Four patients booked for 12.03.2026 10:00 (A, B, C, D); C is in complex treatment.
    frozen.set(datetime(2026, 3, 5, 18, 0, tzinfo=MSK))
    start = datetime(2026, 3, 12, 10, 0, tzinfo=MSK)
    patients = {"A": "101", "B": "102", "C": "103", "D": "104"}
    sync(rt, clinic, *(visit(MSK, f"R-{p}", pid, start) for p, pid in patients.items()))
    jobs()
    deals = {p: deal_of(rt, f"R-{p}") for p in patients}
    for deal_id in deals.values():
        crm.set_responsible(deal_id, doctor)
    journey_on_deal_event(
        clinic.id,
        DealUpdated(
            clinic.external_id, None, deals["C"], stage=StageRef("Реализация комплексного лечения", "Лечение")
        ),
    )

    # 11.03 10:00: the confirmation request goes to each patient; nothing before.
    frozen.set(datetime(2026, 3, 11, 9, 59, tzinfo=MSK))
    sweep_portal(clinic.id)
    assert _fired(rt, clinic.id, "confirm_d1.request") == []
    frozen.set(datetime(2026, 3, 11, 10, 0, tzinfo=MSK))
    sweep_portal(clinic.id)
    jobs()
    request = crm.messages_for(deals["A"])
    assert len(request) == 1 and "12.03.2026 в 10:00" in request[0] and "Смирнов Игорь Петрович" in request[0]

    # B confirms; the others are silent → at 18:00 the administrator's call task, for them only.
    _answer(rt, clinic.id, deals["B"], "confirmation", "yes", frozen)
    jobs()
    assert crm.get_deal(deals["B"]).fields.get("Запись подтверждена") is True
    frozen.set(datetime(2026, 3, 11, 18, 0, tzinfo=MSK))
    sweep_portal(clinic.id)
    jobs()
    silence = [t for t in crm.tasks_for(deals["A"]) if "не ответил на подтверждение" in t.text]
    assert len(silence) == 1 and silence[0].responsible_user_id == users["administrator"]
    assert not [t for t in crm.tasks_for(deals["B"]) if "не ответил" in t.text]

    # All four come; D books the next visit for 20.09. On 13.03 10:00 NPS deals for A, B and D, not for C.
    frozen.set(datetime(2026, 3, 12, 11, 0, tzinfo=MSK))
    later = datetime(2026, 3, 12, 11, 0, tzinfo=MSK)
    sync(
        rt,
        clinic,
        *(
            visit(MSK, f"R-{p}", pid, start, status="completed", changed_at=later)
            for p, pid in patients.items()
        ),
        visit(MSK, "R-D2", patients["D"], datetime(2026, 9, 20, 10, 0, tzinfo=MSK), changed_at=later),
    )
    jobs()
    frozen.set(datetime(2026, 3, 13, 10, 0, tzinfo=MSK))
    sweep_portal(clinic.id)
    jobs()
    nps = {f.deal_id: f for f in _fired(rt, clinic.id, "nps.request")}
    assert set(nps) == {deals["A"], deals["B"], deals["D"]}
    nps_deal = {p: nps[deals[p]].context["created_deal_id"] for p in ("A", "B")}
    assert crm.get_deal(nps_deal["A"]).stage == StageRef("Сбор NPS", "Оценка запрошена")
    assert "от 0 до 10" in crm.messages_for(nps_deal["A"])[0]
    skipped = firings(rt, clinic.id, rule_id=_rule_id(rt, clinic.id, "nps.request"), deal_id=deals["C"])
    assert [(f.state, f.reason) for f in skipped] == [("skipped", "during complex treatment")]

    # Score 6 → a task to review the comment; 10 → the review links.
    _answer(rt, clinic.id, nps_deal["A"], "nps", "6", frozen)
    _answer(rt, clinic.id, nps_deal["B"], "nps", "10", frozen)
    jobs()
    assert [t.text for t in crm.tasks_for(nps_deal["A"]) if "Низкая оценка" in t.text]
    assert not crm.tasks_for(nps_deal["B"])
    assert "https://2gis.ru/ulybka" in crm.messages_for(nps_deal["B"])[-1]
    assert len(crm.messages_for(nps_deal["A"])) == 1

    # 12.09.2026 10:00: hygiene deals six months on, but not for D (booked meanwhile).
    frozen.set(datetime(2026, 9, 12, 10, 0, tzinfo=MSK))
    sweep_portal(clinic.id)
    jobs()
    hygiene = {
        f.deal_id: f.context["created_deal_id"] for f in _fired(rt, clinic.id, "hygiene_recall.invite")
    }
    assert set(hygiene) == {deals["A"], deals["B"], deals["C"]}
    hygiene_d = firings(
        rt, clinic.id, rule_id=_rule_id(rt, clinic.id, "hygiene_recall.invite"), deal_id=deals["D"]
    )
    assert [(f.state, f.reason) for f in hygiene_d] == [("skipped", "booked again since")]
    invitation = crm.messages_for(hygiene[deals["A"]])[0]
    assert invitation.startswith("Пациент 101 Тестович, здравствуйте! Это стоматологическая клиника Улыбка")
    assert "5 000 ₽" in invitation and "+7 495 000-00-00" in invitation

    # B answers «+» → a task to book; A is silent → lost on 19.09 at 10:00.
    frozen.set(datetime(2026, 9, 13, 12, 0, tzinfo=MSK))
    _answer(rt, clinic.id, hygiene[deals["B"]], "plus", "+", frozen)
    jobs()
    assert [t for t in crm.tasks_for(hygiene[deals["B"]]) if "«+»" in t.text]
    frozen.set(datetime(2026, 9, 19, 9, 59, tzinfo=MSK))
    sweep_portal(clinic.id)
    jobs()
    assert not crm.get_deal(hygiene[deals["A"]]).is_closed
    frozen.set(datetime(2026, 9, 19, 10, 0, tzinfo=MSK))
    sweep_portal(clinic.id)
    jobs()
    assert crm.get_deal(hygiene[deals["A"]]).stage.stage_id == "lost"
    assert crm.loss_reason_for(hygiene[deals["A"]]) == "Нет ответа"
    assert not crm.get_deal(hygiene[deals["B"]]).is_closed

    # Lost «Дорого» → the head checks the reason; «Перенос» → nothing.
    for name, reason in (("A", "Дорого"), ("D", "Перенос")):
        journey_on_deal_event(
            clinic.id,
            DealUpdated(
                clinic.external_id,
                None,
                deals[name],
                stage=StageRef("Первичный приём", "lost"),
                fields={"Причина отказа": reason},
            ),
        )
    jobs()
    head = [t for t in crm.tasks_for(deals["A"]) if "причину отказа" in t.text]
    assert len(head) == 1 and head[0].responsible_user_id == users["head"]
    assert not [t for t in crm.tasks_for(deals["D"]) if "причину отказа" in t.text]
