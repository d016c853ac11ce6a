"""Engine rules the stories rely on: quiet hours hold a patient message until 09:00 local (never drop it),
a rescheduled visit is a new occurrence, the validator names unknown fields, and placeholders render."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from connectors.types import DealUpdated, StageRef
from widget_server.jobs.journey import journey_on_deal_event, sweep_portal
from widget_server.journey import Catalogue, RuleInvalid, create_rule, validate_rule
from widget_server.journey.engine import add_months
from widget_server.journey.placeholders import render, unknown_placeholders
from widget_server.models import OutboxJob, Portal

from .conftest import count, enable_templates, firings, make_clinic, sync, visit

MSK = ZoneInfo("Europe/Moscow")


def test_a_message_due_at_night_waits_for_nine(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "quiet", "Europe/Moscow")
    crm_users(clinic)
    enable_templates(rt, clinic, "welcome")
    frozen.set(datetime(2026, 3, 2, 22, 30, tzinfo=MSK))
    journey_on_deal_event(
        clinic.id,
        DealUpdated(clinic.external_id, None, "900", stage=StageRef("Первичный приём", "Новая заявка")),
    )
    (held,) = firings(rt, clinic.id)
    assert (held.state, held.reason) == ("scheduled", "held for quiet hours")
    assert held.due_at == datetime(2026, 3, 3, 9, 0, tzinfo=MSK)
    frozen.set(datetime(2026, 3, 3, 8, 59, tzinfo=MSK))
    sweep_portal(clinic.id)
    assert count(rt, OutboxJob) == 0
    frozen.set(datetime(2026, 3, 3, 9, 0, tzinfo=MSK))
    sweep_portal(clinic.id)
    (fired,) = firings(rt, clinic.id)
    assert fired.state == "fired"
    assert count(rt, OutboxJob) == 2  # the greeting and the rule's note


def test_rescheduled_visit_is_a_new_occurrence(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "move", "Europe/Moscow")
    crm_users(clinic)
    enable_templates(rt, clinic, "confirm_d1")
    frozen.set(datetime(2026, 3, 2, 12, 0, tzinfo=MSK))
    sync(rt, clinic, visit(MSK, "M1", "501", datetime(2026, 3, 12, 10, 0, tzinfo=MSK)))
    moved = datetime(2026, 3, 2, 13, 0, tzinfo=MSK)
    sync(rt, clinic, visit(MSK, "M1", "501", datetime(2026, 3, 14, 11, 0, tzinfo=MSK), changed_at=moved))
    sync(rt, clinic, visit(MSK, "M1", "501", datetime(2026, 3, 14, 11, 0, tzinfo=MSK), changed_at=moved))
    by_state = sorted(
        (f.state, f.planned_at.astimezone(MSK).strftime("%d %H:%M")) for f in firings(rt, clinic.id)
    )
    assert by_state == [
        ("cancelled", "11 10:00"),
        ("cancelled", "11 18:00"),
        ("scheduled", "13 10:00"),
        ("scheduled", "13 18:00"),
    ]


def test_validator_names_unknown_field_and_placeholder(rt, make_portal):
    clinic = make_clinic(make_portal, rt, "check", "Europe/Moscow")
    catalogue = Catalogue(fields={"Причина отказа"}, users={"7"})
    rule = {
        "name": "x",
        "trigger": {"type": "field_set", "field_id": "Нет такого поля"},
        "actions": [{"type": "note", "text": "ok"}],
    }
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        with pytest.raises(RuleInvalid) as error:
            validate_rule(s, portal, rule, catalogue)
        assert error.value.field == "trigger.field_id"
        rule["trigger"] = {"type": "field_set", "field_id": "Причина отказа"}
        rule["actions"] = [{"type": "fields", "fields": {"Причина отказа": "x"}}]
        with pytest.raises(RuleInvalid) as error:
            validate_rule(s, portal, rule, catalogue)
        assert error.value.field == "actions[0]"  # it would set off itself
        rule["actions"] = [{"type": "note", "text": "{{ФИО}} {{Отчество}}"}]
        with pytest.raises(RuleInvalid) as error:
            create_rule(s, portal, {**rule, "enabled": True}, "test", catalogue)
        assert error.value.field == "actions[0].text"


def test_placeholders_and_months():
    assert unknown_placeholders("{{ФИО}}, {{ дата }} {{Нет}}") == ["Нет"]
    assert render("{{ФИО}} — {{врач}}", {"ФИО": "Анна"}) == "Анна — "
    assert add_months(datetime(2026, 8, 31).date(), 6).isoformat() == "2027-02-28"
