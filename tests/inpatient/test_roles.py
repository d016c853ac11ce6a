"""Who sees what, on the server: a nurse reads no amounts and no statements (API and export), finance reads
no medical records (API and export), an admin reads both; each refusal is a 403 with a reason and changes
nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from widget_server.models import Examination, IdempotencyRecord, OutboxJob, Prescription, RoundRecord

from .conftest import admit

MONEY_FIELDS = {"balance", "holds", "available", "daily_rate", "recent_entries", "pending_purchases"}


@pytest.fixture
def admitted(apis, building, tariff, deal, frozen, staff):  # type: ignore[no-untyped-def]
    frozen.set_local("2026-11-24 11:00")
    admit(apis, building, tariff, deal)
    apis["finance"].post(f"/api/v1/deals/{deal}/stay/deposits", json={"amount": "10000.00", "method": "cash"})
    created = apis["doctor"].post(f"/api/v1/deals/{deal}/stay/prescriptions", json={
        "drug": "Мексидол", "dose": "125 мг", "times": ["09:00"], "start_date": "2026-11-24",
        "doctor_user_id": staff.doctor})  # fmt: skip
    assert created.status_code == 201, created.get_json()
    return deal


def _counts(rt) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(model))
            for model in (Prescription, RoundRecord, Examination, OutboxJob, IdempotencyRecord)
        )


@pytest.mark.parametrize(
    "path", ["/statement", "/statement.csv", "/statement.pdf"], ids=["statement", "csv", "pdf"]
)
def test_a_nurse_cannot_read_statements(apis, admitted, path):
    response = apis["nurse"].get(f"/api/v1/deals/{admitted}/stay{path}")
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "missing_role"
    assert "finance" in response.get_json()["error"]["message"]


def test_a_nurse_sees_the_stay_without_amounts(apis, admitted):
    nurse_view = apis["nurse"].get(f"/api/v1/deals/{admitted}/stay").get_json()
    assert nurse_view["money_visible"] is False
    assert not MONEY_FIELDS & set(nurse_view)
    assert apis["admin"].get(f"/api/v1/deals/{admitted}/stay").get_json()["balance"] == "10000.00"


def test_a_nurse_cannot_move_money_and_nothing_changes(rt, apis, admitted):
    before = _counts(rt)
    refused = apis["nurse"].post(
        f"/api/v1/deals/{admitted}/stay/deposits",
        json={"amount": "1.00", "method": "cash"},
        key="nurse-money",
    )
    assert refused.status_code == 403
    assert _counts(rt) == before


@pytest.mark.parametrize(
    "path",
    ["/stay/prescriptions", "/stay/rounds", "/stay/rounds.csv", "/stay/examinations"],
    ids=["prescriptions", "rounds", "rounds-csv", "examinations"],
)
def test_finance_cannot_read_medical_records(apis, admitted, path):
    response = apis["finance"].get(f"/api/v1/deals/{admitted}{path}")
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert (error["code"], error["message"]) == ("missing_role", "this action needs the medical role")


def test_finance_and_staff_cannot_see_or_mark_rounds_and_nothing_changes(rt, apis, admitted, frozen):
    frozen.set_local("2026-11-24 09:10")
    due = apis["nurse"].get("/api/v1/rounds/due").get_json()["rounds"]
    assert len(due) == 1
    before = _counts(rt)
    for role in ("finance", "staff", "viewer"):
        assert apis[role].get("/api/v1/rounds/due").status_code == 403
        refused = apis[role].post(f"/api/v1/rounds/{due[0]['round_id']}/given", json={}, key=f"{role}-round")
        assert refused.status_code == 403
        refused = apis[role].post(f"/api/v1/deals/{admitted}/stay/prescriptions", json={
            "drug": "X", "dose": "1", "times": ["10:00"], "start_date": "2026-11-24",
            "doctor_user_id": "1"})  # fmt: skip
        assert refused.status_code == 403
    assert _counts(rt) == before


def test_admin_reads_both_money_and_medical_records(apis, admitted, frozen):
    admin = apis["admin"]
    assert admin.get(f"/api/v1/deals/{admitted}/stay/statement").status_code == 200
    assert admin.get(f"/api/v1/deals/{admitted}/stay/statement.csv").status_code == 200
    assert admin.get(f"/api/v1/deals/{admitted}/stay/prescriptions").get_json()["prescriptions"][0][
        "drug"
    ] == ("Мексидол")
    frozen.set_local("2026-11-24 09:10")
    due = admin.get("/api/v1/rounds/due").get_json()["rounds"]
    assert admin.post(f"/api/v1/rounds/{due[0]['round_id']}/given", json={}).status_code == 201
    csv = admin.get(f"/api/v1/deals/{admitted}/stay/rounds.csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert "Мексидол;125 мг;выдан" in csv.get_data(as_text=True)


def test_general_information_is_for_everyone_with_a_role(apis, admitted):
    for role in ("staff", "finance", "nurse", "doctor", "admin"):
        body = apis[role].get(f"/api/v1/deals/{admitted}/stay/inpatient").get_json()
        assert (body["building"], body["ward"], body["bed"]) == ("Корпус 1", "12", 1)
