"""Settings screen's server side on the demo sandbox portal: a full mapping saved and versioned, wrong
values refused with the setting named and nothing written, pickers fed from the sandbox CrmClient."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from connectors.errors import RetryLater
from widget_server.cli.demo import ensure_demo
from widget_server.http import api_settings
from widget_server.models import InboxEvent, Portal, PortalSettingsVersion, PortalUser

from ..conftest import Api


@pytest.fixture
def demo(rt, client):  # type: ignore[no-untyped-def]
    info = ensure_demo(rt)
    return info, Api(client, info["api_key"])


def _state(rt, portal_id: int) -> tuple:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        portal = s.get(Portal, portal_id)
        roles = sorted((u.crm_user_id, tuple(u.roles)) for u in s.scalars(select(PortalUser)))
        versions = s.scalar(select(func.count()).select_from(PortalSettingsVersion))
        return (portal.timezone, portal.currency, dict(portal.settings), roles, versions)


def _full_mapping(catalogue: dict, version: int) -> dict:
    pipeline = next(p for p in catalogue["pipelines"] if p["id"] == "inpatient")
    stage_ids = {s["id"] for s in pipeline["stages"]}
    assert {"admission", "in_stay", "won"} <= stage_ids
    users = {u["name"]: u["id"] for u in catalogue["users"]}
    return {
        "version": version,
        "timezone": "Asia/Yekaterinburg",
        "currency": "RUB",
        "locale": "ru_RU",
        "ledger": {
            "overdraft": "1000.00",
            "purchase_threshold": "3000.00",
            "purchase_hold_hours": 48,
            "low_balance_days": 2,
            "charge_discharge_day": True,
        },
        "deal_fields": {
            "balance": "balance",
            "daily_rate": "daily_rate_display",
            "paid_through": "paid_through",
        },
        "stages": {
            "admission": {"pipeline_id": "inpatient", "stage_id": "admission"},
            "in_stay": {"pipeline_id": "inpatient", "stage_id": "in_stay"},
            "discharge": {"pipeline_id": "inpatient", "stage_id": "won"},
        },
        "pipelines": {"ledger": "inpatient", "invoices": None, "distribution": "inpatient"},
        "roles": {users["Игорь Петров"]: ["finance"], users["Олег Сидоров"]: ["staff", "viewer"]},
    }


def test_catalogue_lists_the_sandbox_crms_fields_pipelines_and_users(demo):
    _info, api = demo
    response = api.get("/api/v1/settings/catalogue")
    assert response.status_code == 200, response.get_json()
    catalogue = response.get_json()
    assert catalogue["supported"] == {"deal_fields": True, "pipelines": True}
    assert {"balance", "daily_rate_display", "paid_through"} <= {f["id"] for f in catalogue["deal_fields"]}
    inpatient = next(p for p in catalogue["pipelines"] if p["id"] == "inpatient")
    assert inpatient["name"] == "Стационар"
    assert {"id": "in_stay", "name": "На лечении"} in inpatient["stages"]
    assert {u["name"] for u in catalogue["users"]} >= {"Анна Смирнова", "Игорь Петров"}
    assert "Europe/Moscow" in catalogue["timezones"] and "RUB" in catalogue["currencies"]


def test_a_full_mapping_is_saved_and_versioned(demo, rt):
    info, api = demo
    start = api.get("/api/v1/settings").get_json()
    assert start["version"] == 0
    catalogue = api.get("/api/v1/settings/catalogue").get_json()
    body = _full_mapping(catalogue, 0)
    saved = api.put("/api/v1/settings", json=body, headers={"Idempotency-Key": "settings-1"})
    assert saved.status_code == 200, saved.get_json()
    document = saved.get_json()
    assert document["version"] == 1
    assert document["settings"]["ledger"]["overdraft"] == "1000.00"
    assert document["settings"]["stages"]["discharge"] == {"pipeline_id": "inpatient", "stage_id": "won"}

    timezone, currency, settings, roles, versions = _state(rt, info["portal_id"])
    assert (timezone, currency, versions) == ("Asia/Yekaterinburg", "RUB", 1)
    assert settings["ledger"]["overdraft_minor"] == 100_000
    assert settings["ledger"]["purchase_threshold_minor"] == 300_000
    assert settings["pipelines"] == {"ledger": "inpatient", "distribution": "inpatient"}
    by_name = {u["name"]: u["id"] for u in catalogue["users"]}
    assert (by_name["Олег Сидоров"], ("staff", "viewer")) in roles

    history = api.get("/api/v1/settings/history").get_json()
    assert len(history) == 1 and history[0]["version"] == 1
    assert history[0]["changed_by"].startswith("apikey:")
    assert history[0]["changes"]["timezone"] == {"from": "Europe/Moscow", "to": "Asia/Yekaterinburg"}
    assert history[0]["changes"]["ledger.overdraft"] == {"from": "0.00", "to": "1000.00"}
    assert "deal_fields.balance" not in history[0]["changes"]  # unchanged settings are not listed

    again = api.put("/api/v1/settings", json=body, headers={"Idempotency-Key": "settings-1"})
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert _state(rt, info["portal_id"])[4] == 1

    stale = api.put("/api/v1/settings", json={**body, "timezone": "Europe/Moscow"})
    assert stale.status_code == 409, stale.get_json()
    assert "version" in stale.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    ("change", "setting", "reason"),
    [
        ({"deal_fields": {"balance": "no_such_field"}}, "deal_fields.balance", "no deal field"),
        (
            {"stages": {"discharge": {"pipeline_id": "inpatient", "stage_id": "moon"}}},
            "stages.discharge",
            "no stage 'moon'",
        ),
        ({"pipelines": {"distribution": "outpatient"}}, "pipelines.distribution", "no pipeline"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown IANA timezone"),
        ({"currency": "RUBLES"}, "currency", "ISO 4217"),
        ({"currency": "USD"}, "currency", "cannot change"),  # the demo's stays are kept in RUB
        ({"ledger": {"overdraft": "-5"}}, "ledger.overdraft", "decimal amount"),
        ({"ledger": {"low_balance_days": 99}}, "ledger.low_balance_days", "less than or equal to 60"),
        ({"roles": {"999999": ["admin"]}}, "roles.999999", "no CRM user"),
        ({"roles": {"1": ["superuser"]}}, "roles.1", "unknown roles"),
    ],
)
def test_a_wrong_value_is_refused_naming_the_setting_and_nothing_is_written(
    demo, rt, change, setting, reason
):
    info, api = demo
    before = _state(rt, info["portal_id"])
    response = api.put("/api/v1/settings", json={"version": 0, **change})
    assert response.status_code == 422, response.get_json()
    fields = response.get_json()["error"]["fields"]
    assert setting in fields, fields
    assert reason in " ".join(fields[setting])
    assert _state(rt, info["portal_id"]) == before


def test_settings_are_for_admins_only(demo, make_api, rt):
    info, _api = demo
    with rt.db.transaction() as s:
        portal = s.get(Portal, info["portal_id"])
    finance = make_api(portal, "finance")
    assert finance.get("/api/v1/settings").status_code == 403
    assert finance.put("/api/v1/settings", json={"version": 0, "timezone": "UTC"}).status_code == 403


def test_inbox_lists_recent_events_with_their_outcome(demo, rt):
    info, api = demo
    with rt.db.transaction() as s:
        for n, outcome in enumerate(("handled", "failed", "unsupported")):
            s.add(
                InboxEvent(
                    portal_id=info["portal_id"],
                    source="sandbox",
                    event_type=f"deal.updated.{n}",
                    dedupe_key=f"k{n}",
                    raw_body="{}",
                    outcome=outcome,
                    error="boom" if outcome == "failed" else None,
                )
            )
    rows = api.get("/api/v1/inbox").get_json()
    assert [r["outcome"] for r in rows] == ["unsupported", "failed", "handled"]
    failed = api.get("/api/v1/inbox?outcome=failed").get_json()
    assert [(r["event_type"], r["error"]) for r in failed] == [("deal.updated.1", "boom")]
    assert api.get("/api/v1/inbox?outcome=weird").status_code == 422


def test_the_older_patch_endpoint_is_versioned_too(demo):
    _info, api = demo
    response = api.patch("/api/v1/portal/settings", json={"timezone": "Europe/Samara"})
    assert response.status_code == 200, response.get_json()
    history = api.get("/api/v1/settings/history").get_json()
    assert [(h["version"], h["changes"]) for h in history] == [
        (1, {"timezone": {"from": "Europe/Moscow", "to": "Europe/Samara"}})
    ]
    assert api.get("/api/v1/settings").get_json()["version"] == 1


def test_with_the_crm_down_only_settings_pointing_into_it_are_refused(demo, rt, monkeypatch):
    _info, api = demo

    class Down:
        def list_users(self):  # type: ignore[no-untyped-def]
            raise RetryLater("CRM down", retry_after=30)

    monkeypatch.setattr(api_settings, "crm_for", lambda portal, rt: Down())
    assert api.get("/api/v1/settings/catalogue").status_code == 503
    refused = api.put("/api/v1/settings", json={"version": 0, "deal_fields": {"balance": "paid_through"}})
    assert refused.status_code == 422
    assert "cannot be reached" in refused.get_json()["error"]["fields"]["deal_fields.balance"][0]
    saved = api.put("/api/v1/settings", json={"version": 0, "ledger": {"low_balance_days": 4}})
    assert saved.status_code == 200, saved.get_json()
    assert saved.get_json()["settings"]["ledger"]["low_balance_days"] == 4
