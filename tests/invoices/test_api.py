"""The invoices API: every refusal names its field and writes nothing; roles; idempotency; another
portal's rows are invisible; reversal and cancellation rules."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.invoices.conftest import serve
from tests.invoices.helpers import INSURER, PARTNER, PATIENT_PAYER, create, insurer_invoice, russian
from widget_server.models import (
    Counterparty,
    CounterpartyRequisites,
    CreditNote,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    InvoicePayment,
    OutboxJob,
    PaymentAllocation,
)

TABLES = (
    Counterparty,
    CounterpartyRequisites,
    Invoice,
    InvoiceLine,
    InvoiceCounter,
    CreditNote,
    InvoicePayment,
    PaymentAllocation,
    OutboxJob,
)


def counts(rt) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in TABLES}


def refused(response, field: str, status: int = 422) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_json()
    assert field in response.get_json()["error"]["fields"], response.get_json()
    # The panel shows every refusal in Russian (the i18n file's patterns over the server's English).
    untranslated = [r for r in response.get_json()["error"]["fields"][field] if russian(r) is None]
    assert untranslated == [], f"no Russian wording in ru.json for {untranslated}"


def patient_invoice(counterparty_id: int, **overrides):  # type: ignore[no-untyped-def]
    body = {
        "kind": "patient",
        "counterparty_id": counterparty_id,
        "issue_date": "2025-12-15",
        "lines": [
            {"name": "Первичная консультация", "quantity": "1", "unit_price": "3500.00"},
            {
                "name": "Трансфер из аэропорта",
                "quantity": "1",
                "unit_price": "2500.00",
                "vat_category": "taxed",
            },
        ],
    }
    body.update(overrides)
    return body


@pytest.fixture
def payer(roles):  # type: ignore[no-untyped-def]
    return create(roles["finance"], PATIENT_PAYER)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"requisites": {**INSURER["requisites"], "inn": "7710030412"}}, "requisites.inn"),
        ({"requisites": {**INSURER["requisites"], "account": "40702810938000000002"}}, "requisites.account"),
        ({"requisites": {"inn": "500100732259", "kpp": "770501001"}}, "requisites.kpp"),
        ({"currency": "EUX"}, "currency"),
        ({"kind": "bank"}, "kind"),
    ],
)
def test_bad_counterparty_writes_nothing(rt, roles, change, field) -> None:  # type: ignore[no-untyped-def]
    before = counts(rt)
    refused(roles["finance"].post("/api/v1/counterparties", json={**INSURER, **change}), field)
    assert counts(rt) == before


@pytest.mark.parametrize(
    ("line_change", "field"),
    [
        ({"quantity": "0"}, "lines[0].quantity"),
        ({"quantity": "-1"}, "lines[0].quantity"),
        ({"quantity": "1.2345"}, "lines[0].quantity"),
        ({"unit_price": "10.001"}, "lines[0].unit_price"),
        ({"unit_price": "0.00"}, "lines[0].unit_price"),
        ({"unit_price": 10.5}, "lines[0].unit_price"),
    ],
)
def test_bad_lines_write_nothing(rt, roles, payer, frozen, line_change, field) -> None:  # type: ignore[no-untyped-def]
    body = patient_invoice(payer["id"])
    body["lines"][0].update(line_change)
    before = counts(rt)
    refused(roles["finance"].post("/api/v1/deals/7/invoices", json=body), field)
    assert counts(rt) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"invoice_currency": "EUX"}, "invoice_currency"),
        ({"price_currency": "ABC"}, "price_currency"),
        ({"issue_date": "2025-12-16"}, "issue_date"),
        ({"due_date": "2025-12-01"}, "due_date"),
        ({"kind": "insurer"}, "counterparty_id"),
        ({"kind": "memo"}, "kind"),
    ],
)
def test_bad_invoice_header_writes_nothing(rt, roles, payer, frozen, change, field) -> None:  # type: ignore[no-untyped-def]
    before = counts(rt)
    refused(
        roles["finance"].post("/api/v1/deals/7/invoices", json=patient_invoice(payer["id"], **change)), field
    )
    assert counts(rt) == before


def test_unknown_currency_on_immediate_issue_names_the_field(rt, roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    before = counts(rt)
    body = patient_invoice(payer["id"], issue=True, price_currency="EUX")
    refused(roles["finance"].post("/api/v1/deals/7/invoices", json=body), "price_currency")
    assert counts(rt) == before


def test_quantity_has_up_to_three_decimals(roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    body = patient_invoice(payer["id"], issue=True)
    body["lines"][0]["quantity"] = "1.125"
    created = roles["finance"].post("/api/v1/deals/7/invoices", json=body)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["lines"][0]["amount"] == "3937.50"


def test_missing_kpp_refuses_issue_and_consumes_no_number(rt, roles, frozen, cbr_http) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    serve(cbr_http, "14/12/2025", "2025-12-13")
    requisites = {k: v for k, v in INSURER["requisites"].items() if k != "kpp"}
    insurer = create(finance, {**INSURER, "requisites": requisites})
    draft = finance.post("/api/v1/deals/7/invoices", json=insurer_invoice(insurer["id"])).get_json()
    before = counts(rt)
    refused(finance.post(f"/api/v1/invoices/{draft['id']}/issue"), "counterparty.kpp")
    assert counts(rt) == before
    assert finance.get(f"/api/v1/invoices/{draft['id']}").get_json()["status"] == "draft"
    # Fixed requisites: the invoice takes number 1, the one the failed issue did not consume.
    finance.patch(f"/api/v1/counterparties/{insurer['id']}", json={"requisites": {"kpp": "770501001"}})
    history = finance.get(f"/api/v1/counterparties/{insurer['id']}").get_json()["requisites_history"]
    assert [v["version"] for v in history] == [1, 2]
    assert "kpp" not in history[0]["data"] and history[1]["data"]["kpp"] == "770501001"
    issued = finance.post(f"/api/v1/invoices/{draft['id']}/issue").get_json()
    assert issued["number"] == "СК-2025-000001"


def test_missing_insurer_details_name_the_field(rt, roles, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    insurer = create(finance, INSURER)
    body = insurer_invoice(insurer["id"], price_currency="RUB")
    del body["details"]["gop_no"]
    draft = finance.post("/api/v1/deals/7/invoices", json=body).get_json()
    before = counts(rt)
    refused(finance.post(f"/api/v1/invoices/{draft['id']}/issue"), "details.gop_no")
    assert counts(rt) == before


def test_rate_unavailable_is_422_rate_and_the_invoice_stays_a_draft(rt, roles, frozen, cbr_http) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    for _ in range(3):
        serve(cbr_http, "14/12/2025", "2025-12-13", status=503)
    insurer = create(finance, INSURER)
    draft = finance.post("/api/v1/deals/7/invoices", json=insurer_invoice(insurer["id"])).get_json()
    before = counts(rt)
    refused(finance.post(f"/api/v1/invoices/{draft['id']}/issue", key="issue-1"), "rate")
    assert counts(rt) == before
    assert finance.get(f"/api/v1/invoices/{draft['id']}").get_json()["status"] == "draft"


def test_payment_refusals(rt, roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    invoice = finance.post(
        "/api/v1/deals/7/invoices", json=patient_invoice(payer["id"], issue=True)
    ).get_json()
    assert invoice["total"] == "6000.00"
    before = counts(rt)
    url = f"/api/v1/invoices/{invoice['id']}/payments"
    refused(finance.post(url, json={"payment_date": "2025-12-15", "amount": "6000.01"}), "amount")
    refused(finance.post(url, json={"payment_date": "2025-12-16", "amount": "10.00"}), "payment_date")
    refused(
        finance.post(url, json={"payment_date": "2025-12-15", "amount": "10.00", "currency": "EUR"}),
        "currency",
    )
    refused(finance.post(url, json={"payment_date": "2025-12-15", "amount": "10.001"}), "amount")
    split = {
        "payment_date": "2025-12-15",
        "amount": "100.00",
        "currency": "RUB",
        "allocations": [{"invoice_id": invoice["id"], "amount": "99.99"}],
    }
    refused(finance.post(f"/api/v1/counterparties/{payer['id']}/payments", json=split), "allocations")
    assert counts(rt) == before


def test_one_bank_payment_split_across_invoices(roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    first = finance.post("/api/v1/deals/7/invoices", json=patient_invoice(payer["id"], issue=True)).get_json()
    second = finance.post(
        "/api/v1/deals/8/invoices", json=patient_invoice(payer["id"], issue=True)
    ).get_json()
    response = finance.post(
        f"/api/v1/counterparties/{payer['id']}/payments",
        json={
            "payment_date": "2025-12-15",
            "amount": "7000.00",
            "currency": "RUB",
            "allocations": [
                {"invoice_id": first["id"], "amount": "6000.00"},
                {"invoice_id": second["id"], "amount": "1000.00"},
            ],
        },
    )
    assert response.status_code == 201, response.get_json()
    assert [i["status"] for i in response.get_json()["invoices"]] == ["paid", "partly_paid"]
    assert [i["number"] for i in response.get_json()["invoices"]] == ["СЧ-2025-000001", "СЧ-2025-000002"]


def test_reversal_is_admin_only_and_compensates(roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance, admin = roles["finance"], roles["admin"]
    invoice = finance.post(
        "/api/v1/deals/7/invoices", json=patient_invoice(payer["id"], issue=True)
    ).get_json()
    paid = finance.post(
        f"/api/v1/invoices/{invoice['id']}/payments", json={"payment_date": "2025-12-15", "amount": "6000.00"}
    ).get_json()
    url = f"/api/v1/invoices/{invoice['id']}/payments/{paid['payment']['id']}/reversal"
    assert finance.post(url, json={"reason": "ошибочный платёж"}).status_code == 403
    other = finance.post("/api/v1/deals/8/invoices", json=patient_invoice(payer["id"], issue=True)).get_json()
    wrong = f"/api/v1/invoices/{other['id']}/payments/{paid['payment']['id']}/reversal"
    assert admin.post(wrong, json={"reason": "не тот счёт"}).status_code == 404
    reversed_ = admin.post(url, json={"reason": "ошибочный платёж"})
    assert reversed_.status_code == 201
    assert reversed_.get_json()["payment"]["sign"] == -1
    assert reversed_.get_json()["invoices"][0]["status"] == "issued"
    refused(admin.post(url, json={"reason": "ещё раз"}), "payment_id", 409)
    detail = finance.get(f"/api/v1/invoices/{invoice['id']}").get_json()
    assert [p["sign"] for p in detail["payments"]] == [1, -1]
    assert detail["paid"] == "0.00"


def test_full_cancel_refused_while_payments_stand(rt, roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    invoice = finance.post(
        "/api/v1/deals/7/invoices", json=patient_invoice(payer["id"], issue=True)
    ).get_json()
    finance.post(
        f"/api/v1/invoices/{invoice['id']}/payments", json={"payment_date": "2025-12-15", "amount": "1.00"}
    )
    before = counts(rt)
    refused(
        finance.post(f"/api/v1/invoices/{invoice['id']}/credit-notes", json={"reason": "отмена"}),
        "payments",
        409,
    )
    assert counts(rt) == before


def test_full_credit_note_cancels_and_draft_cancels_without_number(roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    issued = finance.post(
        "/api/v1/deals/7/invoices", json=patient_invoice(payer["id"], issue=True)
    ).get_json()
    cancelled = finance.post(
        f"/api/v1/invoices/{issued['id']}/credit-notes", json={"reason": "ошибка в счёте"}
    )
    assert cancelled.status_code == 201
    body = cancelled.get_json()
    assert (body["status"], body["outstanding"], body["credit_notes"][0]["amount"]) == (
        "cancelled",
        "0.00",
        "6000.00",
    )
    draft = finance.post("/api/v1/deals/7/invoices", json=patient_invoice(payer["id"])).get_json()
    gone = finance.post(
        f"/api/v1/invoices/{draft['id']}/credit-notes", json={"reason": "не нужен"}
    ).get_json()
    assert (gone["status"], gone["number"], gone["credit_notes"]) == ("cancelled", None, [])


def test_issued_invoice_is_never_edited(roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    issued = finance.post(
        "/api/v1/deals/7/invoices", json=patient_invoice(payer["id"], issue=True)
    ).get_json()
    refused(finance.patch(f"/api/v1/invoices/{issued['id']}", json={"due_date": "2026-01-31"}), "status", 409)


def test_draft_edit(roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    draft = finance.post("/api/v1/deals/7/invoices", json=patient_invoice(payer["id"])).get_json()
    edited = finance.patch(
        f"/api/v1/invoices/{draft['id']}",
        json={"lines": [{"name": "Повторная консультация", "quantity": "2", "unit_price": "1500.00"}]},
    )
    assert edited.status_code == 200, edited.get_json()
    assert [line["name"] for line in edited.get_json()["lines"]] == ["Повторная консультация"]


def test_staff_sees_statuses_only_and_cannot_write(roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance, staff = roles["finance"], roles["staff"]
    finance.post("/api/v1/deals/7/invoices", json=patient_invoice(payer["id"], issue=True))
    seen = staff.get("/api/v1/deals/7/invoices").get_json()[0]
    assert seen["status"] == "issued" and seen["number"] == "СЧ-2025-000001"
    assert "total" not in seen and "lines" not in seen
    assert staff.post("/api/v1/deals/7/invoices", json=patient_invoice(payer["id"])).status_code == 403
    assert staff.get(f"/api/v1/counterparties/{payer['id']}/settlements").status_code == 403
    assert staff.get(f"/api/v1/counterparties/{payer['id']}").get_json()["requisites"] == {}


def test_another_portal_gets_404(rt, roles, payer, frozen, make_portal, make_api) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    invoice = finance.post(
        "/api/v1/deals/7/invoices", json=patient_invoice(payer["id"], issue=True)
    ).get_json()
    other = make_api(make_portal(slug="other-clinic"), "admin")
    assert other.get(f"/api/v1/invoices/{invoice['id']}").status_code == 404
    assert other.get(f"/api/v1/invoices/{invoice['id']}.pdf").status_code == 404
    assert other.get(f"/api/v1/counterparties/{payer['id']}").status_code == 404
    assert other.post(f"/api/v1/invoices/{invoice['id']}/issue").status_code == 404
    before = counts(rt)
    response = other.post(
        f"/api/v1/invoices/{invoice['id']}/payments", json={"payment_date": "2025-12-15", "amount": "1.00"}
    )
    assert response.status_code == 404
    assert other.post("/api/v1/deals/7/invoices", json=patient_invoice(payer["id"])).status_code == 404
    assert counts(rt) == before
    assert other.get("/api/v1/deals/7/invoices").get_json() == []


def test_idempotency_key_replays_the_issue(rt, roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    body = patient_invoice(payer["id"], issue=True)
    first = finance.post("/api/v1/deals/7/invoices", json=body, key="same")
    again = finance.post("/api/v1/deals/7/invoices", json=body, key="same")
    assert first.get_json() == again.get_json()
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == 1
    paid = {"payment_date": "2025-12-15", "amount": "100.00"}
    url = f"/api/v1/invoices/{first.get_json()['id']}/payments"
    assert (
        finance.post(url, json=paid, key="pay").get_json()
        == finance.post(url, json=paid, key="pay").get_json()
    )
    assert finance.get(f"/api/v1/invoices/{first.get_json()['id']}").get_json()["paid"] == "100.00"


def test_rates_endpoint(roles, cbr_http, frozen) -> None:  # type: ignore[no-untyped-def]
    serve(cbr_http, "14/12/2025", "2025-12-13")
    rate = roles["staff"].get("/api/v1/rates?date=2025-12-14&currency=EUR&to=KZT").get_json()
    assert rate["effective_date"] == "2025-12-13"
    assert rate["rate"].startswith("604.12")
    refused(roles["staff"].get("/api/v1/rates?date=2025-12-14&currency=ZZZ"), "currency")


def test_partner_clinic_payable_goes_out(roles, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    partner = create(finance, PARTNER)
    body = {
        "kind": "partner_clinic",
        "counterparty_id": partner["id"],
        "issue_date": "2025-12-14",
        "details": {"partner_invoice_no": "9", "partner_invoice_date": "2025-12-10", "patient_name": "А. Р."},
        "lines": [{"name": "КТ", "quantity": "1", "unit_price": "8000.00"}],
        "issue": True,
    }
    invoice = finance.post("/api/v1/deals/7/invoices", json=body).get_json()
    view = finance.get(f"/api/v1/counterparties/{partner['id']}/settlements").get_json()
    assert view["payable"]["RUB"]["outstanding"] == "8000.00"
    assert view["receivable"] == {}
    assert invoice["number"] == "ПК-2025-000001"


def test_ageing_buckets_by_days_past_due(roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    for deal, due in (("1", "2025-12-20"), ("2", "2025-11-01"), ("3", "2025-10-01"), ("4", "2025-08-01")):
        body = patient_invoice(payer["id"], issue=True, issue_date="2025-07-15", due_date=due)
        assert finance.post(f"/api/v1/deals/{deal}/invoices", json=body).status_code == 201
    view = finance.get(f"/api/v1/counterparties/{payer['id']}/settlements").get_json()
    # Today is 15.12.2025: not yet due and 44, 75 and 136 days past due.
    assert view["receivable"]["RUB"]["ageing"] == {
        "0-30": "6000.00",
        "31-60": "6000.00",
        "61-90": "6000.00",
        "90+": "6000.00",
    }
    assert view["receivable"]["RUB"]["outstanding"] == "24000.00"


def test_changing_a_drafts_price_currency_keeps_the_amounts(roles, payer, frozen) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    draft = finance.post("/api/v1/deals/7/invoices", json=patient_invoice(payer["id"])).get_json()
    jpy = finance.patch(f"/api/v1/invoices/{draft['id']}", json={"price_currency": "JPY"})
    assert jpy.status_code == 200, jpy.get_json()
    assert [line["unit_price"] for line in jpy.get_json()["lines"]] == ["3500", "2500"]
    odd = finance.post("/api/v1/deals/8/invoices", json=patient_invoice(payer["id"])).get_json()
    finance.patch(
        f"/api/v1/invoices/{odd['id']}",
        json={"lines": [{"name": "Анализ", "quantity": "1", "unit_price": "10.50"}]},
    )
    refused(
        finance.patch(f"/api/v1/invoices/{odd['id']}", json={"price_currency": "JPY"}), "lines[0].unit_price"
    )
