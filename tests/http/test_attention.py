"""Admins learn at once that a portal lost its CRM connection: in the panel and, if set, by webhook."""

from __future__ import annotations

import json

import pytest
import responses

from widget_server.models import OutboxJob, Portal
from widget_server.tokens import DbTokenSource

ALERT_URL = "https://alerts.example.ru/hooks/clinicbridge"


@pytest.fixture
def amo_portal(make_portal):  # type: ignore[no-untyped-def]
    return make_portal(kind="amocrm", slug="amo-att", external_id="29876543", domain="clinic.amocrm.ru")


def _codes(api) -> list[str]:  # type: ignore[no-untyped-def]
    return [item["code"] for item in api.get("/api/v1/widget/session").get_json()["attention"]]


def test_a_healthy_portal_asks_for_nothing(amo_portal, make_api):
    assert _codes(make_api(amo_portal, "admin")) == []
    assert make_api(amo_portal, "admin").get("/api/v1/portal/attention").get_json() == []


def test_lost_access_refused_webhooks_and_failed_jobs_are_shown_to_admins_only(rt, amo_portal, make_api):
    DbTokenSource(rt, amo_portal.id).mark_reauth_required("amoCRM refused the grant: invalid_grant")
    with rt.db.transaction() as session:
        portal = session.get(Portal, amo_portal.id)
        portal.settings = {**portal.settings, "amocrm": {"webhooks": {"status": "refused", "reason": "403"}}}
        failed = OutboxJob(portal_id=portal.id, operation="add_note", payload={}, idempotency_key="k1")
        failed.state = "failed"
        session.add(failed)

    admin = make_api(amo_portal, "admin")
    items = admin.get("/api/v1/portal/attention").get_json()
    assert [i["code"] for i in items] == ["needs_reauth", "webhooks_refused", "outbox_failed"]
    reauth = items[0]
    assert reauth["severity"] == "critical"
    assert reauth["detail"] == "amoCRM refused the grant: invalid_grant"
    assert reauth["action"].endswith("/install/amocrm")
    assert "переподключите" in reauth["message_ru"] and "reconnect" in reauth["message_en"]
    assert "1" in items[2]["message_ru"]
    assert _codes(admin) == ["needs_reauth", "webhooks_refused", "outbox_failed"]
    # Staff cannot act on these: the panel shows them nothing, and the list itself is refused.
    assert _codes(make_api(amo_portal, "staff")) == []
    assert make_api(amo_portal, "finance").get("/api/v1/portal/attention").status_code == 403


def test_losing_access_is_announced_once_to_the_alert_webhook(rt, amo_portal, jobs, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.with_overrides(alert_webhook_url=ALERT_URL))
    with responses.RequestsMock() as rsps:
        rsps.post(ALERT_URL, json={"ok": True})
        DbTokenSource(rt, amo_portal.id).mark_reauth_required("Token has been revoked")
        DbTokenSource(rt, amo_portal.id).mark_reauth_required("again")  # already needs_reauth: no 2nd alert
        jobs()
        [call] = rsps.calls
    body = json.loads(call.request.body)
    assert body["event"] == "portal.connection_lost"
    assert body["status"] == "needs_reauth"
    assert body["portal"]["slug"] == "amo-att"
    assert body["reason"] == "Token has been revoked"
    assert body["action"].endswith("/install/amocrm")  # the panel banner's reconnect link
    assert "переподключите" in body["text"] and "reconnect" in body["text"]


def test_an_alert_for_a_portal_that_recovered_meanwhile_is_not_sent(rt, amo_portal, jobs, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.with_overrides(alert_webhook_url=ALERT_URL))
    with responses.RequestsMock() as rsps:  # any request would fail the test: none is registered
        with rt.db.transaction() as session:
            session.get(Portal, amo_portal.id).status = "blocked"
        with rt.db.transaction() as session:
            session.get(Portal, amo_portal.id).status = "active"
        jobs()
        assert len(rsps.calls) == 0


def test_without_an_alert_url_nothing_is_queued(rt, amo_portal):
    before = rt.queues["default"].count
    DbTokenSource(rt, amo_portal.id).mark_reauth_required("invalid_grant")
    assert rt.queues["default"].count == before
