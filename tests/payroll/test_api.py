"""The payroll API: the rate directory (admin), the month's statement (admin and finance), refusals."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from widget_server.models import PayrollRate, Portal, PortalUser

RATE = {
    "effective_from": "2026-01-01",
    "hourly_rate": "250.00",
    "overtime_rate": "375.00",
    "primary_bonus": "150.00",
    "waiting_list_bonus": "100.00",
}


@pytest.fixture
def operator(rt, portal) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        user = PortalUser(portal_id=portal.id, crm_user_id="77", name="Ольга Иванова", roles=["staff"])
        s.add(user)
        s.flush()
        return user.id


def _count(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(PayrollRate))


def test_rates_round_trip_as_strings(rt, make_api, portal, operator) -> None:  # type: ignore[no-untyped-def]
    admin = make_api(portal, "admin")
    body = {"head_user_id": operator, "rates": [{**RATE, "user_id": operator, "mis_names": ["Иванова О."]}]}
    response = admin.put("/api/v1/payroll/rates", json=body)
    assert response.status_code == 200, response.json
    assert response.json["head_user_id"] == operator
    assert response.json["rates"][0]["hourly_rate"] == "250.00"
    assert admin.get("/api/v1/payroll/rates").json == response.json
    with rt.db.transaction() as s:
        assert s.get(Portal, portal.id).settings["payroll"] == {"head_user_id": operator}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hourly_rate": 250}, "rates[0].hourly_rate"),
        ({"overtime_rate": 375.5}, "rates[0].overtime_rate"),
        ({"primary_bonus": "-150.00"}, "rates[0].primary_bonus"),
        ({"waiting_list_bonus": "сто"}, "rates[0].waiting_list_bonus"),
        ({"user_id": 999999}, "rates[0].user_id"),
        ({"overtime_basis": "week"}, "rates[0].overtime_basis"),
        ({"effective_from": "01.01.2026"}, "rates[0].effective_from"),
    ],
)
def test_a_bad_rate_is_a_422_and_nothing_is_written(rt, make_api, portal, operator, change, field) -> None:  # type: ignore[no-untyped-def]
    before = _count(rt)
    body = {"rates": [{**RATE, "user_id": operator, **change}]}
    response = make_api(portal, "admin").put("/api/v1/payroll/rates", json=body)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    assert _count(rt) == before


def test_a_head_from_another_portal_is_refused(rt, make_api, portal, operator, make_portal) -> None:  # type: ignore[no-untyped-def]
    other = make_portal(slug="other")
    with rt.db.transaction() as s:
        stranger = PortalUser(portal_id=other.id, crm_user_id="1", name="Чужой", roles=[])
        s.add(stranger)
        s.flush()
        stranger_id = stranger.id
    body = {"head_user_id": stranger_id, "rates": [{**RATE, "user_id": operator}]}
    response = make_api(portal, "admin").put("/api/v1/payroll/rates", json=body)
    assert response.status_code == 422
    assert "head_user_id" in response.json["error"]["fields"]
    assert _count(rt) == 0


def test_roles(make_api, portal, operator) -> None:  # type: ignore[no-untyped-def]
    finance = make_api(portal, "finance")
    assert finance.get("/api/v1/payroll/2026-03").status_code == 200
    assert finance.get("/api/v1/payroll/rates").status_code == 403
    body = {"rates": [{**RATE, "user_id": operator}]}
    assert finance.put("/api/v1/payroll/rates", json=body).status_code == 403
    assert make_api(portal, "supervisor").get("/api/v1/payroll/2026-03").status_code == 403


@pytest.mark.parametrize("month", ["2026-3", "2026-13", "march", "2026-03.xlsx", "2026-03-01"])
def test_a_month_not_yyyy_mm_is_a_422(make_api, portal, month) -> None:  # type: ignore[no-untyped-def]
    response = make_api(portal, "admin").get(f"/api/v1/payroll/{month}")
    assert response.status_code == 422
    assert "month" in response.json["error"]["fields"]


def test_statement_as_json_and_csv(make_api, portal, operator) -> None:  # type: ignore[no-untyped-def]
    admin = make_api(portal, "admin")
    admin.put("/api/v1/payroll/rates", json={"rates": [{**RATE, "user_id": operator}]})
    doc = admin.get("/api/v1/payroll/2026-03").json
    assert [o["name"] for o in doc["operators"]] == ["Ольга Иванова"]
    assert doc["total"] == "0.00"
    csv_response = admin.get("/api/v1/payroll/2026-03.csv")
    assert csv_response.mimetype == "text/csv"
    text = csv_response.data.decode("utf-8")
    assert text.startswith("\ufeffОператор;Раздел;Дата;Описание;Количество;Ед.;Ставка;Сумма")
