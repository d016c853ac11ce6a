"""Idempotency-Key: a replay returns the first response; another body under the same key is a 409."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from tests.support.failures import fail_first_call
from widget_server.models import IdempotencyRecord, OutboxJob, utcnow


def _jobs(rt) -> int:
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(OutboxJob))


def test_replay_returns_the_first_response(admin, rt):
    first = admin.post("/api/v1/deals/42/notes", json={"text": "Позвонить родственнику"}, key="note-1")
    again = admin.post("/api/v1/deals/42/notes", json={"text": "Позвонить родственнику"}, key="note-1")
    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _jobs(rt) == 1


def test_replay_ignores_json_formatting_but_not_content(admin, rt):
    admin.post("/api/v1/deals/42/notes", json={"text": "a"}, key="fmt")
    spaced = admin.client.post(
        "/api/v1/deals/42/notes",
        data='{ "text" :  "a" }',
        content_type="application/json",
        headers={"Authorization": f"Bearer {admin.key}", "Idempotency-Key": "fmt"},
    )
    assert spaced.status_code == 202 and spaced.headers["Idempotent-Replayed"] == "true"
    assert _jobs(rt) == 1


def test_same_key_with_another_body_is_409(admin, rt):
    admin.post("/api/v1/deals/42/notes", json={"text": "first"}, key="dup")
    response = admin.post("/api/v1/deals/42/notes", json={"text": "second"}, key="dup")
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in error["fields"]
    assert _jobs(rt) == 1


def test_same_key_on_another_path_is_409(admin):
    admin.post("/api/v1/deals/1/notes", json={"text": "x"}, key="path")
    assert admin.post("/api/v1/deals/2/notes", json={"text": "x"}, key="path").status_code == 409


def test_hundred_replays_leave_one_job(admin, rt):
    responses = [
        admin.post("/api/v1/deals/9/notes", json={"text": "перевязка"}, key="burst") for _ in range(100)
    ]
    assert {r.status_code for r in responses} == {202}
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert _jobs(rt) == 1


def test_refusals_are_replayed_too(admin, rt):
    first = admin.post("/api/v1/deals/1/notes", json={"text": ""}, key="bad")
    again = admin.post("/api/v1/deals/1/notes", json={"text": ""}, key="bad")
    assert first.status_code == again.status_code == 422
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _jobs(rt) == 0


def test_a_request_still_in_progress_gets_409_with_retry_after(admin, rt, portal):
    import hashlib
    import json

    body = {"text": "x"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(b"POST\n/api/v1/deals/1/notes\n" + canonical).hexdigest()
    with rt.db.transaction() as s:
        s.add(
            IdempotencyRecord(
                portal_id=portal.id,
                key="busy",
                method="POST",
                path="/api/v1/deals/1/notes",
                request_hash=digest,
                principal="apikey:1",
            )
        )
    response = admin.post("/api/v1/deals/1/notes", json=body, key="busy")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_in_progress"
    assert response.headers["Retry-After"] == "1"
    assert _jobs(rt) == 0


def test_an_abandoned_claim_is_taken_over(admin, rt, portal):
    import hashlib
    import json

    body = {"text": "x"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(b"POST\n/api/v1/deals/1/notes\n" + canonical).hexdigest()
    with rt.db.transaction() as s:
        s.add(
            IdempotencyRecord(
                portal_id=portal.id,
                key="crashed",
                method="POST",
                path="/api/v1/deals/1/notes",
                request_hash=digest,
                principal="apikey:1",
                created_at=utcnow() - timedelta(minutes=5),
            )
        )
    response = admin.post("/api/v1/deals/1/notes", json=body, key="crashed")
    assert response.status_code == 202
    assert _jobs(rt) == 1


def test_key_must_be_printable_ascii(admin, rt):
    response = admin.post("/api/v1/deals/1/notes", json={"text": "x"}, key="ключ с пробелом")
    assert response.status_code == 400
    assert response.get_json()["error"]["fields"]["Idempotency-Key"]
    assert _jobs(rt) == 0


def test_keys_are_scoped_per_portal(make_portal, make_api, rt):
    a = make_api(make_portal(slug="clinic-a"), "staff")
    b = make_api(make_portal(slug="clinic-b"), "staff")
    ra = a.post("/api/v1/deals/1/notes", json={"text": "x"}, key="shared")
    rb = b.post("/api/v1/deals/1/notes", json={"text": "x"}, key="shared")
    assert ra.status_code == rb.status_code == 202
    assert ra.get_json()["id"] != rb.get_json()["id"]
    assert "Idempotent-Replayed" not in rb.headers


def test_an_unexpected_failure_releases_the_key(app, admin, rt, monkeypatch):
    import widget_server.http.api_deals as api_deals

    fail_first_call(monkeypatch, api_deals, "enqueue_outbox", RuntimeError("database hiccup"))
    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert admin.post("/api/v1/deals/1/notes", json={"text": "x"}, key="retry-me").status_code == 500
    assert admin.post("/api/v1/deals/1/notes", json={"text": "x"}, key="retry-me").status_code == 202
    assert _jobs(rt) == 1
