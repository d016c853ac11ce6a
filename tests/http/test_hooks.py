"""Inbound hooks: verified, stored once per dedupe key, acknowledged at once, processed by a job."""

from __future__ import annotations

import json

from sqlalchemy import select

from widget_server.models import InboxEvent
from widget_server.sandbox.hooks import hook_secret, sign


def _post(client, rt, portal, payload, *, signature=None):
    body = json.dumps(payload).encode()
    secret = hook_secret(rt.settings.secret_key, portal.external_id)
    headers = {"X-Sandbox-Signature": signature if signature is not None else sign(secret, body)}
    return client.post(
        f"/hooks/sandbox/{portal.slug}", data=body, content_type="application/json", headers=headers
    )


def _events(rt):
    with rt.db.transaction() as s:
        return list(s.scalars(select(InboxEvent).order_by(InboxEvent.id)))


STAGE_CHANGED = {
    "event_id": "evt-1",
    "event": "deal.stage_changed",
    "deal_id": 12,
    "pipeline_id": "1",
    "stage_id": "in_stay",
    "occurred_at": "2026-11-23T10:00:00+03:00",
}


def test_a_hook_is_stored_acknowledged_and_processed(client, rt, portal, jobs):
    response = _post(client, rt, portal, STAGE_CHANGED)
    assert response.status_code == 200
    assert response.get_json()["status"] == "accepted"
    [event] = _events(rt)
    assert (event.outcome, event.event_type, event.dedupe_key) == (
        "pending",
        "deal.stage_changed",
        "sandbox:evt-1",
    )
    jobs()
    [event] = _events(rt)
    assert event.outcome == "handled" and event.processed_at is not None


def test_a_replayed_hook_is_stored_once(client, rt, portal, jobs):
    for _ in range(3):
        response = _post(client, rt, portal, STAGE_CHANGED)
        assert response.status_code == 200
    assert response.get_json()["status"] == "duplicate"
    assert len(_events(rt)) == 1
    jobs()
    assert [e.attempts for e in _events(rt)] == [1]


def test_a_forged_signature_is_refused_and_stores_nothing(client, rt, portal):
    response = _post(client, rt, portal, STAGE_CHANGED, signature="sha256=" + "0" * 64)
    assert response.status_code == 401
    assert "X-Sandbox-Signature" in response.get_json()["error"]["fields"]
    assert _events(rt) == []


def test_another_portals_secret_does_not_verify(client, rt, portal, make_portal):
    other = make_portal(slug="clinic-b")
    body = json.dumps(STAGE_CHANGED).encode()
    forged = sign(hook_secret(rt.settings.secret_key, other.external_id), body)
    response = client.post(
        f"/hooks/sandbox/{portal.slug}",
        data=body,
        content_type="application/json",
        headers={"X-Sandbox-Signature": forged},
    )
    assert response.status_code == 401
    assert _events(rt) == []


def test_unknown_portal_is_404(client, rt, portal):
    response = client.post("/hooks/sandbox/no-such-clinic", data=b"{}", content_type="application/json")
    assert response.status_code == 404
    assert _events(rt) == []


def test_a_hook_without_event_id_is_400(client, rt, portal):
    response = _post(client, rt, portal, {"event": "deal.created", "deal_id": 1})
    assert response.status_code == 400
    assert response.get_json()["error"]["fields"] == {"event_id": ["required non-empty string"]}
    assert _events(rt) == []


def test_outcomes_for_ignored_unsupported_and_anomalous_events(client, rt, portal, jobs, caplog):
    _post(client, rt, portal, {"event_id": "e-ign", "event": "deal.viewed"})
    _post(client, rt, portal, {"event_id": "e-uns", "event": "invoice.paid"})
    _post(client, rt, portal, {"event_id": "e-bad", "event": "deal.stage_changed", "deal_id": None})
    jobs()
    outcomes = {e.dedupe_key: (e.outcome, e.error) for e in _events(rt)}
    assert outcomes["sandbox:e-ign"] == ("ignored", None)
    assert outcomes["sandbox:e-uns"] == ("unsupported", "unsupported event 'invoice.paid'")
    assert outcomes["sandbox:e-bad"][0] == "failed"
    assert "deal_id" in outcomes["sandbox:e-bad"][1]
    assert any(r.name == "widget_server.unsupported_events" for r in caplog.records)
