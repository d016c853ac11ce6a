from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from ..reports.clinic_data import msk


def test_lookup_over_http(make_api, portal, clinic) -> None:  # type: ignore[no-untyped-def]
    patient = clinic.patient("Смирнова Анна Петровна", phone="+79161234567")
    clinic.visit(patient, msk(2026, 3, 12, 10), doctor_name="Иванов И.И.", card_number="A-17")
    staff = make_api(portal, "staff")
    found = staff.get("/api/v1/callers", query_string={"phone": "+7 (916) 123-45-67"})
    assert found.status_code == 200
    assert [(m["name"], m["card_number"]) for m in found.json["matches"]] == [
        ("Смирнова Анна Петровна", "A-17")
    ]
    unknown = staff.get("/api/v1/callers", query_string={"phone": "+74950000001"})
    assert unknown.json["matches"] == []
    assert make_api(portal, "viewer").get("/api/v1/callers?phone=%2B79161234567").status_code == 403


@pytest.mark.parametrize("query", ["phone=123", "phone=", "", "phone=%2B7888888888&x=1"])
def test_a_bad_phone_is_a_422(make_api, portal, query) -> None:  # type: ignore[no-untyped-def]
    response = make_api(portal, "staff").get(f"/api/v1/callers?{query}")
    assert response.status_code == 422, response.json
    assert response.json["error"]["fields"]


def test_one_transaction_per_lookup(rt, make_api, portal, clinic) -> None:  # type: ignore[no-untyped-def]
    """Authentication reads in the lookup's own transaction on PostgreSQL (one BEGIN/COMMIT per ring); on
    SQLite the API key is one lone statement before it, outside any transaction."""
    clinic.patient("Смирнова Анна Петровна", phone="+79161234567")
    staff = make_api(portal, "staff")
    assert staff.get("/api/v1/callers?phone=%2B79161234567").status_code == 200  # last_used_at is written
    begun: list[int] = []

    def begin(*_args: Any) -> None:
        begun.append(1)

    event.listen(rt.db.engine, "begin", begin)
    try:
        found = staff.get("/api/v1/callers?phone=%2B79161234567")
    finally:
        event.remove(rt.db.engine, "begin", begin)
    assert [m["name"] for m in found.json["matches"]] == ["Смирнова Анна Петровна"]
    assert len(begun) == 1
