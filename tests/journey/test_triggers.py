"""Triggers beyond the story: an answer arriving as a mapped field, a won deal opening the complex-treatment
deal at the stage its field names (fields copied from the CRM), and a deal stuck in a stage."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from connectors.types import DealUpdated, NewDeal, StageRef
from widget_server.jobs.journey import journey_on_deal_event, sweep_portal
from widget_server.journey import Catalogue, create_rule
from widget_server.models import JourneyAnswer, Portal
from widget_server.sandbox.crm import SandboxCrm

from .conftest import count, enable_templates, firings, make_clinic

MSK = ZoneInfo("Europe/Moscow")


def _event(clinic, deal_id: str, stage: StageRef | None = None, **fields: object) -> DealUpdated:
    return DealUpdated(clinic.external_id, None, deal_id, stage=stage, fields=fields)


def test_answer_from_a_mapped_field(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "field-answer", "Europe/Moscow")
    crm_users(clinic)
    with rt.db.transaction() as s:
        row = s.get(Portal, clinic.id)
        row.settings = {
            **row.settings,
            "journey": {**row.settings["journey"], "answer_fields": {"nps": "NPS"}},
        }
    enable_templates(rt, clinic, "nps")
    crm = SandboxCrm(rt.db, clinic.id, timezone="Europe/Moscow")
    deal = crm.create_deal(NewDeal("NPS", StageRef("Сбор NPS", "Оценка запрошена")), idempotency_key="d").id
    frozen.set(datetime(2026, 3, 13, 12, 0, tzinfo=MSK))
    journey_on_deal_event(clinic.id, _event(clinic, deal, NPS="10"))
    journey_on_deal_event(clinic.id, _event(clinic, deal, NPS="10"))  # amoCRM repeats the whole lead
    jobs()
    assert count(rt, JourneyAnswer) == 1
    assert len(firings(rt, clinic.id, state="fired")) == 1
    assert "https://yandex.ru/maps/org/ulybka" in crm.messages_for(deal)[0]


def test_won_deal_opens_complex_treatment_at_the_named_stage(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "complex", "Europe/Moscow")
    crm_users(clinic)
    enable_templates(rt, clinic, "complex_treatment")
    crm = SandboxCrm(rt.db, clinic.id, timezone="Europe/Moscow")
    fields = {"Продажа комплексного лечения": "План лечения подготовлен", "Источник заявки": "Сайт"}
    deal = crm.create_deal(
        NewDeal("Приём", StageRef("Первичный приём", "Посетил клинику"), fields=fields), idempotency_key="w"
    ).id
    frozen.set(datetime(2026, 3, 13, 12, 0, tzinfo=MSK))
    journey_on_deal_event(clinic.id, _event(clinic, deal, StageRef("Первичный приём", "won"), **fields))
    jobs()
    (fired,) = firings(rt, clinic.id, state="fired")
    created = crm.get_deal(fired.context["created_deal_id"])
    assert created.stage == StageRef("Продажа комплексного лечения", "План лечения подготовлен")
    assert created.fields.get("Источник заявки") == "Сайт"


def test_stuck_in_a_stage(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "stuck", "Europe/Moscow")
    users = crm_users(clinic)
    rule = {
        "name": "Заявка не взята в работу",
        "enabled": True,
        "trigger": {
            "type": "stuck",
            "pipeline_id": "Первичный приём",
            "stage_id": "Новая заявка",
            "hours": 2,
        },
        "actions": [{"type": "task", "role": "head", "text": "Заявка ждёт больше двух часов"}],
    }
    with rt.db.transaction() as s:
        create_rule(s, s.get(Portal, clinic.id), rule, "test", Catalogue())
    start = datetime(2026, 3, 2, 10, 0, tzinfo=MSK)
    frozen.set(start)
    new = StageRef("Первичный приём", "Новая заявка")
    journey_on_deal_event(clinic.id, _event(clinic, "1", new))
    journey_on_deal_event(clinic.id, _event(clinic, "2", new))
    frozen.set(start + timedelta(hours=1))
    journey_on_deal_event(clinic.id, _event(clinic, "2", StageRef("Первичный приём", "Взяли в работу")))
    frozen.set(start + timedelta(hours=2))
    sweep_portal(clinic.id)
    outcome = {f.deal_id: (f.state, f.reason) for f in firings(rt, clinic.id)}
    assert outcome == {"1": ("fired", None), "2": ("skipped", "the deal left the stage")}
    with rt.db.transaction() as s:
        from widget_server.models import OutboxJob

        task = s.scalar(select(OutboxJob).where(OutboxJob.operation == "create_task"))
        assert task.payload["user_id"] == users["head"] and task.deal_id == "1"
