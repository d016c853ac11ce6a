"""The journey's follow-ups: a tag is added to the deal's tags (never written over them), a flagged phone
closes the lead, confirm_d1's call-task variant, «не был более года» from the visits, curator and plan-link
fields as settings, and amoCRM's own loss reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from connectors.amocrm.schemas import parse_deal
from connectors.types import DealUpdated, NewContact, NewDeal, StageRef
from tests.support.fake_amocrm import load_fixture
from widget_server.jobs.journey import journey_on_deal_event, sweep_portal
from widget_server.journey import Catalogue, RuleInvalid, create_rule, record_answer, validate_rule
from widget_server.journey.engine import not_seen_for_a_year
from widget_server.journey.settings import SettingsInvalid, validate_journey_settings
from widget_server.journey.templates import SEED002_TEMPLATES
from widget_server.models import JourneyRule, MisAppointment, OutboxJob, Portal
from widget_server.sandbox.crm import SandboxCrm
from widget_server.sandbox.models import SandboxContact, SandboxDeal

from .conftest import deal_of, enable_templates, firings, make_clinic, sync, visit

MSK = ZoneInfo("Europe/Moscow")


def _rule(rt, portal_id: int, doc: dict) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        portal = s.get(Portal, portal_id)
        return create_rule(s, portal, {"enabled": True, **doc}, "test", Catalogue()).id


def test_the_tag_joins_the_tags_the_deal_has(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "tags", "Europe/Moscow")
    crm_users(clinic)
    _rule(
        rt,
        clinic.id,
        {
            "name": "Тег на записи",
            "trigger": {"type": "appointment_status", "statuses": ["booked"]},
            "actions": [{"type": "tag", "tag": "Комплексное лечение"}],
        },
    )
    crm = SandboxCrm(rt.db, clinic.id, timezone="Europe/Moscow")
    frozen.set(datetime(2026, 3, 5, 12, 0, tzinfo=MSK))
    sync(rt, clinic, visit(MSK, "T1", "301", datetime(2026, 3, 12, 10, 0, tzinfo=MSK)))
    jobs()
    deal_id = deal_of(rt, "T1")
    crm.add_deal_tag(deal_id, "VIP")
    frozen.set(datetime(2026, 3, 5, 12, 10, tzinfo=MSK))  # past the wait for the deal to be created
    sweep_portal(clinic.id)
    jobs()
    (fired,) = firings(rt, clinic.id, state="fired")
    with rt.db.transaction() as s:
        ops = list(s.scalars(select(OutboxJob.operation).where(OutboxJob.origin == f"journey:{fired.id}")))
    assert "journey_add_tag" in ops and "update_deal_fields" not in ops
    assert crm.tags_for(deal_id) == ["VIP", "Комплексное лечение"]


def _ops(rt, firing_id: int) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        rows = s.scalars(select(OutboxJob).where(OutboxJob.origin == f"journey:{firing_id}"))
        return {row.operation: row.payload for row in rows}


def _rule_ids(rt, portal_id: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        rows = s.execute(select(JourneyRule.key, JourneyRule.id).where(JourneyRule.portal_id == portal_id))
        return {key: rule_id for key, rule_id in rows}


def _settings(rt, portal_id: int, **changes: object) -> None:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        row = s.get(Portal, portal_id)
        row.settings = {**row.settings, "journey": {**row.settings["journey"], **changes}}


def test_a_phone_the_mis_flags_closes_the_lead_as_not_a_lead(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "phones", "Europe/Moscow")
    crm_users(clinic)
    enable_templates(rt, clinic, "invalid_phone")
    frozen.set(datetime(2026, 3, 5, 12, 0, tzinfo=MSK))
    start = datetime(2026, 3, 12, 10, 0, tzinfo=MSK)
    sync(
        rt,
        clinic,
        visit(MSK, "P1", "401", start, patient_phone="12-34"),
        visit(MSK, "P2", "402", start),
        visit(MSK, "P3", "401", start + timedelta(days=7), patient_phone="12-34"),
    )
    jobs()
    frozen.set(datetime(2026, 3, 5, 12, 10, tzinfo=MSK))
    sweep_portal(clinic.id)
    jobs()
    (fired,) = firings(rt, clinic.id, state="fired")  # once per patient, the valid number not at all
    assert fired.occurrence.startswith("phone:patient:")
    assert _ops(rt, fired.id)["move_deal"]["loss_reason"] == "Не заявка"
    crm = SandboxCrm(rt.db, clinic.id, timezone="Europe/Moscow")
    assert crm.get_deal(fired.deal_id).stage.stage_id == "lost"
    assert crm.loss_reason_for(fired.deal_id) == "Не заявка"


def test_a_new_lead_whose_phones_all_fail_validation_is_flagged(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "lead-phones", "Europe/Moscow")
    crm_users(clinic)
    enable_templates(rt, clinic, "invalid_phone")
    crm = SandboxCrm(rt.db, clinic.id, timezone="Europe/Moscow")
    stage = StageRef("Первичный приём", "Новая заявка")
    leads = {}
    frozen.set(datetime(2026, 3, 5, 12, 0, tzinfo=MSK))
    for name, phone in (("bad", "+7 (888) 888-88-88"), ("good", "+7 916 123-45-67"), ("old", "12-34")):
        contact = crm.create_contact(NewContact(name, ("+7 916 000-00-01",)), idempotency_key=f"c-{name}")
        leads[name] = crm.create_deal(
            NewDeal(name, stage, contact_ids=(contact.id,)), idempotency_key=f"d-{name}"
        ).id
        with rt.db.transaction() as s:
            s.get(SandboxContact, int(contact.id)).phones = [phone]  # as a form or a person typed it
            # A lead of last week, first seen by the journey now: not a lead that just came in.
            created = frozen.now - timedelta(days=7 if name == "old" else 0, minutes=1)
            s.get(SandboxDeal, int(leads[name])).created_at = created
    for deal_id in leads.values():
        journey_on_deal_event(clinic.id, DealUpdated(clinic.external_id, None, deal_id, stage=stage))
        journey_on_deal_event(clinic.id, DealUpdated(clinic.external_id, None, deal_id, stage=stage))
    (fired,) = firings(rt, clinic.id)
    assert (fired.state, fired.deal_id, fired.occurrence) == (
        "fired",
        leads["bad"],
        f"phone:deal:{leads['bad']}",
    )


def test_confirm_d1_as_a_call_task_for_the_administrator(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "calls", "Europe/Moscow")
    users = crm_users(clinic)
    _settings(rt, clinic.id, confirm_d1_mode="call_task")
    enable_templates(rt, clinic, "confirm_d1", "confirm_d1.call")
    frozen.set(datetime(2026, 3, 5, 12, 0, tzinfo=MSK))
    sync(
        rt,
        clinic,
        visit(MSK, "C1", "501", datetime(2026, 3, 12, 10, 0, tzinfo=MSK)),
        visit(MSK, "C2", "502", datetime(2026, 3, 12, 11, 0, tzinfo=MSK)),
    )
    jobs()
    ids = _rule_ids(rt, clinic.id)
    frozen.set(datetime(2026, 3, 11, 10, 0, tzinfo=MSK))
    sweep_portal(clinic.id)
    calls = firings(rt, clinic.id, rule_id=ids["confirm_d1.call"], state="fired")
    assert len(calls) == 2
    tasks = sorted((_ops(rt, f.id)["create_task"] for f in calls), key=lambda t: t["text"])
    assert {t["user_id"] for t in tasks} == {users["administrator"]}
    assert "12.03.2026 в 10:00" in tasks[0]["text"] and "12.03.2026 в 11:00" in tasks[1]["text"]
    # The message variant the portal did not choose left no occurrence to skip.
    assert firings(rt, clinic.id, rule_id=ids["confirm_d1.request"]) == []
    # The administrator enters the answer: «да» confirms, silence by 18:00 is the call to offer a new time.
    confirmed = deal_of(rt, "C1")
    with rt.db.transaction() as s:
        record_answer(s, s.get(Portal, clinic.id), confirmed, "confirmation", "yes", "api", frozen.now)
    sweep_portal(clinic.id)
    frozen.set(datetime(2026, 3, 11, 18, 0, tzinfo=MSK))
    sweep_portal(clinic.id)
    assert [f.deal_id for f in firings(rt, clinic.id, rule_id=ids["confirm_d1.yes"], state="fired")] == [
        deal_of(rt, "C1")
    ]
    assert [f.deal_id for f in firings(rt, clinic.id, rule_id=ids["confirm_d1.silence"], state="fired")] == [
        deal_of(rt, "C2")
    ]


def test_switching_confirm_d1_mode_moves_the_pending_confirmations(
    rt, make_portal, crm_users, make_api, monkeypatch, frozen, jobs
):
    from widget_server.http import api_journey

    clinic = make_clinic(make_portal, rt, "switch", "Europe/Moscow")
    users = crm_users(clinic)
    monkeypatch.setattr(api_journey, "_catalogue", lambda portal: Catalogue(users=set(users.values())))
    enable_templates(rt, clinic, "confirm_d1", "confirm_d1.call")
    frozen.set(datetime(2026, 3, 5, 12, 0, tzinfo=MSK))
    sync(rt, clinic, visit(MSK, "S1", "601", datetime(2026, 3, 12, 10, 0, tzinfo=MSK)))
    jobs()
    ids = _rule_ids(rt, clinic.id)
    assert [f.state for f in firings(rt, clinic.id, rule_id=ids["confirm_d1.request"])] == ["scheduled"]
    assert firings(rt, clinic.id, rule_id=ids["confirm_d1.call"]) == []
    response = make_api(clinic).put("/api/v1/journey/settings", json={"confirm_d1_mode": "call_task"})
    assert response.status_code == 200
    assert firings(rt, clinic.id, rule_id=ids["confirm_d1.request"]) == []
    (call,) = firings(rt, clinic.id, rule_id=ids["confirm_d1.call"])
    assert (call.state, call.due_at.replace(tzinfo=UTC)) == (
        "scheduled",
        datetime(2026, 3, 11, 7, 0, tzinfo=UTC),
    )
    frozen.set(datetime(2026, 3, 11, 10, 0, tzinfo=MSK))
    sweep_portal(clinic.id)
    assert [f.state for f in firings(rt, clinic.id, rule_id=ids["confirm_d1.call"])] == ["fired"]
    assert {f.state for f in firings(rt, clinic.id)} <= {"fired", "scheduled"}


def test_not_seen_for_a_year_is_computed_from_completed_visits():
    day = datetime(2026, 3, 12, 10, 0, tzinfo=MSK)

    def v(days_before: int, status: str = "completed", deal: str | None = None) -> MisAppointment:
        return MisAppointment(starts_at=day - timedelta(days=days_before), status=status, deal_id=deal)

    assert not_seen_for_a_year([v(0, "booked", "D"), v(366)], "D", day)
    assert not not_seen_for_a_year([v(0, "booked", "D"), v(365)], "D", day)
    assert not not_seen_for_a_year([v(0, "booked", "D"), v(400), v(30)], "D", day)
    assert not not_seen_for_a_year([v(0, "booked", "D"), v(30, "cancelled"), v(20, "no_show")], "D", day)
    assert not not_seen_for_a_year([v(0, "booked", "D")], "D", day)  # a first visit is not a return
    # The deal's date is its own first visit, not when it was won.
    assert not_seen_for_a_year([v(10, "completed", "D"), v(400)], "D", day)
    (doc,) = SEED002_TEMPLATES["complex_treatment"]
    action = doc["actions"][0]
    assert action["computed_fields"] == {"Не был более года": "not_seen_for_a_year"}
    assert "Не был более года" not in action["copy_fields"]


def test_complex_treatment_deal_carries_the_computed_flag(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "complex", "Europe/Moscow")
    crm_users(clinic)
    enable_templates(rt, clinic, "complex_treatment")
    frozen.set(datetime(2026, 3, 12, 12, 0, tzinfo=MSK))
    sync(
        rt,
        clinic,
        visit(MSK, "X0", "601", datetime(2024, 11, 1, 10, 0, tzinfo=MSK), status="completed"),
        visit(MSK, "X1", "601", datetime(2026, 3, 12, 10, 0, tzinfo=MSK), status="completed"),
    )
    jobs()
    deal_id = deal_of(rt, "X1")
    journey_on_deal_event(
        clinic.id,
        DealUpdated(
            clinic.external_id,
            None,
            deal_id,
            stage=StageRef("Повторный приём", "won"),
            fields={"Продажа комплексного лечения": "Консультация"},
        ),
    )
    (fired,) = firings(rt, clinic.id, state="fired")
    assert _ops(rt, fired.id)["journey_create_deal"]["fields"] == {"Не был более года": True}


def test_curator_and_plan_link_fields_are_settings(rt, make_portal, crm_users, frozen, jobs, make_api):
    assert validate_journey_settings(
        {"curator_field_id": "Куратор", "plan_link_field_id": "План"}, users=None, fields={"Куратор", "План"}
    ) == {"curator_field_id": "Куратор", "plan_link_field_id": "План"}
    for key in ("curator_field_id", "plan_link_field_id"):
        with pytest.raises(SettingsInvalid) as exc:
            validate_journey_settings({key: "Нет такого"}, users=None, fields={"Куратор", "План"})
        assert (exc.value.field, exc.value.reason) == (key, "the CRM has no deal field 'Нет такого'")
    clinic = make_clinic(make_portal, rt, "plans", "Europe/Moscow")
    crm_users(clinic)
    admin = make_api(clinic)
    before = dict(admin.get("/api/v1/journey/settings").get_json()["settings"])
    for body, field in (
        ({"confirm_d1_mode": "sms"}, "confirm_d1_mode"),
        ({"loss_reason_source": "guess"}, "loss_reason_source"),
        ({"plan_link_field_id": 5}, "plan_link_field_id"),
    ):
        response = admin.put("/api/v1/journey/settings", json=body)
        assert response.status_code == 422 and field in response.get_json()["error"]["fields"]
    assert admin.get("/api/v1/journey/settings").get_json()["settings"] == before
    assert admin.put("/api/v1/journey/settings", json={"plan_link_field_id": "План"}).status_code == 200
    # {{план}} reads the field the setting names.
    enable_templates(rt, clinic, "plan_presented")
    frozen.set(datetime(2026, 3, 12, 12, 0, tzinfo=MSK))
    stage = StageRef("Продажа комплексного лечения", "Презентация проведена")
    journey_on_deal_event(
        clinic.id,
        DealUpdated(clinic.external_id, None, "77", stage=stage, fields={"План": "https://plan.example/77"}),
    )
    (fired,) = firings(rt, clinic.id, state="fired")
    assert _ops(rt, fired.id)["journey_send_message"]["text"].endswith("https://plan.example/77")


def test_lost_review_reads_the_crms_own_loss_reason(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "reasons", "Europe/Moscow")
    crm_users(clinic)
    _settings(rt, clinic.id, loss_reason_source="crm")
    enable_templates(rt, clinic, "lost_review")
    crm = SandboxCrm(rt.db, clinic.id, timezone="Europe/Moscow")
    frozen.set(datetime(2026, 3, 12, 12, 0, tzinfo=MSK))
    lost = StageRef("Первичный приём", "lost")
    deals = {}
    for reason in ("Дорого", "Перенос"):
        deal = crm.create_deal(
            NewDeal(reason, StageRef("Первичный приём", "Новая заявка")), idempotency_key=reason
        )
        crm.move_deal(deal.id, lost, loss_reason=reason)
        # The hook carries no reason and the custom field, still mapped, is empty.
        journey_on_deal_event(
            clinic.id,
            DealUpdated(clinic.external_id, None, deal.id, stage=lost, fields={"Причина отказа": ""}),
        )
        deals[reason] = deal.id
    by_deal = {f.deal_id: (f.state, f.reason) for f in firings(rt, clinic.id)}
    assert by_deal == {deals["Дорого"]: ("fired", None), deals["Перенос"]: ("skipped", "loss reason Перенос")}


def test_amocrm_reads_the_leads_loss_reason_by_name():
    lead = load_fixture("api/leads_get__with_contacts.json")
    assert parse_deal(lead, MSK, {}).loss_reason is None
    lead = {
        **lead,
        "loss_reason_id": 7002,
        "_embedded": {**lead["_embedded"], "loss_reason": [{"id": 7002, "name": "Дорого", "sort": 200000}]},
    }
    assert parse_deal(lead, MSK, {}).loss_reason == "Дорого"


def test_enabling_a_rule_checks_the_curator_and_plan_fields_it_reads(rt, make_portal, crm_users):
    clinic = make_clinic(make_portal, rt, "plan-check", "Europe/Moscow")
    users = crm_users(clinic)
    (plan,) = SEED002_TEMPLATES["plan_presented"]
    (meeting,) = SEED002_TEMPLATES["curator_meeting"]
    fields = {"Сообщение пациенту", "Куратор нужен", "План лечения (ссылка)"}
    catalogue = Catalogue(users=set(users.values()), fields=fields)
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        with pytest.raises(RuleInvalid) as exc:
            validate_rule(s, portal, plan, catalogue)
        assert exc.value.field == "actions[1].text" and "plan_link_field_id" in exc.value.reason
        with pytest.raises(RuleInvalid) as exc:
            validate_rule(s, portal, meeting, catalogue)
        assert exc.value.field == "conditions.curator_needed" and "curator_field_id" in exc.value.reason
        journey = {**portal.settings["journey"]}
        journey.update(curator_field_id="Куратор нужен", plan_link_field_id="План лечения (ссылка)")
        portal.settings = {**portal.settings, "journey": journey}
        assert validate_rule(s, portal, plan, catalogue)["actions"][1]["type"] == "message"
        assert validate_rule(s, portal, meeting, catalogue)["conditions"]["curator_needed"] is True


def test_deferred_demand_on_the_crms_own_loss_reason(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "deferred", "Europe/Moscow")
    crm_users(clinic)
    _settings(rt, clinic.id, loss_reason_source="crm")
    (doc,) = SEED002_TEMPLATES["deferred_demand"]
    conditions = {**doc["conditions"], "loss_reasons": ["Отложенный спрос"]}
    _rule(rt, clinic.id, {**doc, "conditions": conditions})
    crm = SandboxCrm(rt.db, clinic.id, timezone="Europe/Moscow")
    frozen.set(datetime(2026, 3, 12, 12, 0, tzinfo=MSK))
    lost = StageRef("Первичный приём", "lost")
    deals = {}
    for reason in ("Отложенный спрос", "Дорого"):
        deal = crm.create_deal(
            NewDeal(reason, StageRef("Первичный приём", "Новая заявка")), idempotency_key=reason
        )
        crm.move_deal(deal.id, lost, loss_reason=reason)
        event = DealUpdated(clinic.external_id, None, deal.id, stage=lost, fields={"Отложенный спрос": "3"})
        journey_on_deal_event(clinic.id, event)
        deals[reason] = deal.id
    by_deal = {f.deal_id: (f.state, f.reason) for f in firings(rt, clinic.id)}
    assert by_deal == {
        deals["Отложенный спрос"]: ("fired", None),
        deals["Дорого"]: ("skipped", "loss reason not listed"),
    }


def test_a_curator_or_plan_field_the_crm_lacks_is_a_422_and_nothing_is_saved(
    rt, make_portal, crm_users, make_api, monkeypatch
):
    from widget_server.http import api_journey

    clinic = make_clinic(make_portal, rt, "plan-api", "Europe/Moscow")
    users = crm_users(clinic)
    fields = {"Сообщение пациенту", "Причина отказа", "Теги", "Куратор нужен"}
    monkeypatch.setattr(
        api_journey, "_catalogue", lambda portal: Catalogue(users=set(users.values()), fields=fields)
    )
    admin = make_api(clinic)
    before = admin.get("/api/v1/journey/settings").get_json()["settings"]
    for key in ("curator_field_id", "plan_link_field_id"):
        response = admin.put(
            "/api/v1/journey/settings", json={"confirm_d1_mode": "call_task", key: "Нет такого"}
        )
        assert response.status_code == 422
        assert response.get_json()["error"]["fields"] == {key: ["the CRM has no deal field 'Нет такого'"]}
    assert admin.get("/api/v1/journey/settings").get_json()["settings"] == before
    saved = admin.put("/api/v1/journey/settings", json={"curator_field_id": "Куратор нужен"})
    assert saved.status_code == 200 and saved.get_json()["settings"]["curator_field_id"] == "Куратор нужен"
