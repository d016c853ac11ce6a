"""Bad input gets the JSON error shape naming the field and the reason, and changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from widget_server.models import IdempotencyRecord, OutboxJob


def _count(rt, model) -> int:
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_malformed_json_is_400_naming_the_body(admin, rt):
    response = admin.client.post(
        "/api/v1/deals/1/notes",
        data=b'{"text": "oops",',
        content_type="application/json",
        headers={"Authorization": f"Bearer {admin.key}", "Idempotency-Key": "k-malformed"},
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "malformed_json"
    assert "line 1" in error["fields"]["body"][0]
    assert _count(rt, OutboxJob) == 0


def test_json_array_body_is_refused(admin, rt):
    response = admin.post("/api/v1/deals/1/notes", json=["text"])
    assert response.status_code == 400
    assert response.get_json()["error"]["fields"]["body"] == ["must be a JSON object, got list"]
    assert _count(rt, OutboxJob) == 0


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"text": 42}, "text", "Not a valid string."),
        ({}, "text", "Missing data for required field."),
        ({"text": ""}, "text", "Length must be between 1 and 20000."),
        ({"text": "ok", "colour": "red"}, "colour", "Unknown field."),
    ],
)
def test_wrong_types_get_422_with_the_field_named(admin, rt, body, field, reason):
    response = admin.post("/api/v1/deals/1/notes", json=body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert error["fields"] == {field: [reason]}
    assert field in error["message"]
    assert _count(rt, OutboxJob) == 0


def test_nested_errors_are_flattened_to_dotted_names(admin):
    response = admin.patch(
        "/api/v1/portal/settings", json={"deal_fields": {"balance": 7}, "timezone": "Mars/Base"}
    )
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert fields["deal_fields.balance"] == ["Not a valid string."]
    assert fields["timezone"] == ["unknown IANA timezone 'Mars/Base'"]


def test_wrong_content_type_is_415(admin):
    response = admin.client.post(
        "/api/v1/deals/1/notes",
        data="text=hi",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": f"Bearer {admin.key}"},
    )
    assert response.status_code == 415
    assert "Content-Type" in response.get_json()["error"]["fields"]


def test_unknown_route_and_wrong_method_answer_json(client):
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    wrong = client.delete("/healthz")
    assert wrong.status_code == 405
    assert "GET" in wrong.headers["Allow"]
    assert wrong.get_json()["error"]["code"] == "method_not_allowed"


def test_invalid_query_parameter_is_422(admin):
    response = admin.get("/api/v1/outbox?state=exploded&limit=0")
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"state", "limit"}


def test_unexpected_exception_is_json_500_with_request_id(app, admin, monkeypatch):
    import widget_server.http.api_portal as api_portal

    monkeypatch.setattr(api_portal, "_portal_document", lambda: 1 / 0)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = admin.get("/api/v1/portal", headers={"X-Request-Id": "req-12345678"})
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "req-12345678" in response.get_json()["error"]["message"]


def test_idempotency_records_are_not_left_by_refused_auth(client, rt):
    response = client.post(
        "/api/v1/deals/1/notes",
        json={"text": "x"},
        headers={"Authorization": "Bearer cb_AAAAAAAA_" + "x" * 40, "Idempotency-Key": "k"},
    )
    assert response.status_code == 401
    assert _count(rt, IdempotencyRecord) == 0
