"""On amoCRM the loss reasons are the account's own list (GET /api/v4/leads/loss_reasons): a rule that
closes with a reason, or with loss_reason_source=crm compares the deal's reason with one, must name one the
list has: otherwise a 422 naming the field and nothing saved."""

from __future__ import annotations

import responses
from sqlalchemy import select

from tests.connectors.amocrm.test_client import BASE, make_client
from tests.support.fake_amocrm import load_fixture
from widget_server.journey import Catalogue
from widget_server.models import JourneyRule, JourneyRuleVersion, Portal

from .conftest import count, enable_templates, make_clinic

REASONS = [r["name"] for r in load_fixture("api/loss_reasons.json")["_embedded"]["loss_reasons"]]


def test_the_amocrm_client_reads_the_accounts_loss_reasons_once() -> None:
    with responses.RequestsMock() as mock:
        listed = mock.get(f"{BASE}/api/v4/leads/loss_reasons", json=load_fixture("api/loss_reasons.json"))
        crm = make_client()
        assert crm.loss_reasons() == ["Выбрали другую клинику", "Дорого"]
        assert crm.loss_reasons() == REASONS
        assert listed.call_count == 1


def _clinic(rt, make_portal, crm_users, monkeypatch, source: str):  # type: ignore[no-untyped-def]
    from widget_server.http import api_journey

    clinic = make_clinic(make_portal, rt, f"reasons-{source}", "Europe/Moscow")
    users = crm_users(clinic)
    with rt.db.transaction() as s:
        row = s.get(Portal, clinic.id)
        row.settings = {**row.settings, "journey": {**row.settings["journey"], "loss_reason_source": source}}
    # What _catalogue reads from an amoCRM account (the client call is tested above).
    monkeypatch.setattr(
        api_journey, "_catalogue", lambda portal: Catalogue(users=set(users.values()), loss_reasons=REASONS)
    )
    return clinic


def _rule(conditions: dict, reason: str = "Дорого") -> dict:
    return {
        "name": "Проверка отказа",
        "enabled": True,
        "trigger": {"type": "stage_entered", "pipeline_id": "Первичный приём", "stage_id": "lost"},
        "conditions": conditions,
        "actions": [
            {"type": "note", "text": "Проверить причину отказа"},
            {"type": "move", "pipeline_id": "Возврат", "stage_id": "lost", "loss_reason": reason},
        ],
    }


def test_a_reason_the_account_lacks_is_a_422_and_nothing_is_saved(
    rt, make_portal, crm_users, make_api, monkeypatch
):
    clinic = _clinic(rt, make_portal, crm_users, monkeypatch, "crm")
    api = make_api(clinic)
    before = (count(rt, JourneyRule), count(rt, JourneyRuleVersion))
    for body, field, name in (
        (_rule({"not_loss_reasons": ["Дорого", "Перенос"]}), "conditions.not_loss_reasons[1]", "Перенос"),
        (_rule({"loss_reasons": ["Погода"]}), "conditions.loss_reasons[0]", "Погода"),
        (_rule({}, reason="Не заявка"), "actions[1].loss_reason", "Не заявка"),
    ):
        refused = api.post("/api/v1/journey/rules", json=body)
        assert refused.status_code == 422, refused.get_json()
        assert refused.get_json()["error"]["fields"] == {field: [f"the CRM has no loss reason {name!r}"]}
    assert (count(rt, JourneyRule), count(rt, JourneyRuleVersion)) == before
    # Case aside, as amoCRM's move matches them.
    saved = api.post(
        "/api/v1/journey/rules", json=_rule({"loss_reasons": ["дорого"]}, reason="выбрали другую клинику")
    )
    assert saved.status_code == 201, saved.get_json()


def test_enabling_the_seed_lost_review_checks_its_reasons(rt, make_portal, crm_users, make_api, monkeypatch):
    clinic = _clinic(rt, make_portal, crm_users, monkeypatch, "crm")
    enable_templates(rt, clinic)  # installed, all disabled
    with rt.db.transaction() as s:
        rule_id = s.scalar(
            select(JourneyRule.id).where(JourneyRule.portal_id == clinic.id, JourneyRule.key == "lost_review")
        )
    refused = make_api(clinic).patch(f"/api/v1/journey/rules/{rule_id}", json={"enabled": True})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["fields"] == {
        "conditions.not_loss_reasons[0]": ["the CRM has no loss reason 'Перенос'"]
    }
    with rt.db.transaction() as s:
        assert s.get(JourneyRule, rule_id).enabled is False


def test_reasons_kept_in_a_field_are_the_clinics_own_words(rt, make_portal, crm_users, make_api, monkeypatch):
    clinic = _clinic(rt, make_portal, crm_users, monkeypatch, "field")
    api = make_api(clinic)
    assert api.post("/api/v1/journey/rules", json=_rule({"not_loss_reasons": ["Перенос"]})).status_code == 201
    # A move still closes with amoCRM's own reason.
    refused = api.post("/api/v1/journey/rules", json=_rule({}, reason="Не заявка") | {"name": "Другое"})
    assert refused.status_code == 422 and "actions[1].loss_reason" in refused.get_json()["error"]["fields"]


def test_switching_to_the_crms_reasons_checks_the_enabled_rules(
    rt, make_portal, crm_users, make_api, monkeypatch
):
    clinic = _clinic(rt, make_portal, crm_users, monkeypatch, "field")
    api = make_api(clinic)
    created = api.post("/api/v1/journey/rules", json=_rule({"not_loss_reasons": ["Перенос"]}))
    assert created.status_code == 201
    refused = api.put("/api/v1/journey/settings", json={"loss_reason_source": "crm", "brand": "Улыбка+"})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["fields"] == {
        "loss_reason_source": [
            "the CRM has no loss reason 'Перенос' (rule «Проверка отказа», not_loss_reasons)"
        ]
    }
    with rt.db.transaction() as s:
        journey = s.get(Portal, clinic.id).settings["journey"]
    assert journey["loss_reason_source"] == "field" and journey.get("brand") != "Улыбка+"
    rule_id = created.get_json()["id"]
    assert (
        api.patch(
            f"/api/v1/journey/rules/{rule_id}", json={"conditions": {"not_loss_reasons": ["Дорого"]}}
        ).status_code
        == 200
    )
    assert api.put("/api/v1/journey/settings", json={"loss_reason_source": "crm"}).status_code == 200
