"""The «Счета» section in the amoCRM shell, headless Chromium: a finance user issues an insurer invoice
priced in EUR and invoiced in roubles at the CBR rate (served by `responses` from tests/fixtures/cbr, as
tests/invoices does), a refused quantity is shown beside its field and writes nothing, a partial payment
makes the invoice partly paid; staff sees statuses and no forms."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.invoices.conftest import CLINIC_REQUISITES, serve
from tests.invoices.helpers import INSURER, INSURER_DETAILS, INSURER_LINES, PATIENT_PAYER
from widget_server import cbr
from widget_server.models import Invoice, InvoicePayment, Portal

from .conftest import FINANCE, HAVE_CHROMIUM, RU, STAFF, plain

if not HAVE_CHROMIUM:
    pytest.skip("Debian chromium missing (scripts/test.sh installs it)", allow_module_level=True)

import responses
from playwright.sync_api import expect


def _rows(rt, model) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


@pytest.fixture
def clinic(live, rt, monkeypatch):  # type: ignore[no-untyped-def]
    """The clinic's requisites (issuing prints them) and the insurer of seed 001."""
    monkeypatch.setattr(cbr, "WAIT_MULTIPLIER", 0)
    with rt.db.transaction() as s:
        portal = s.get(Portal, live.portal_id)
        portal.settings = {
            **(portal.settings or {}),
            "invoices": {"clinic": CLINIC_REQUISITES, "vat_payer": True},
        }
    live.ids["insurer"] = live.api("POST", "/api/v1/counterparties", INSURER)["id"]
    return live


@pytest.fixture
def cbr_http():  # type: ignore[no-untyped-def]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def _invoices_tab(page):  # type: ignore[no-untyped-def]
    page.locator('.cbp-tab[data-section="invoices"]').click()
    expect(page.locator(".cbp-invoices")).to_be_visible()


def _field(form, name: str):  # type: ignore[no-untyped-def]
    return form.locator(f'[name="{name}"]')


def _error(form, name: str):  # type: ignore[no-untyped-def]
    return form.locator(f'.cbp-field-error[data-field="{name}"]')


def test_finance_issues_an_insurer_invoice_in_eur_and_records_a_partial_payment(
    open_card, clinic, rt, cbr_http
):
    serve(cbr_http, "14/12/2025", "2025-12-13")
    page = open_card(FINANCE, width=320)
    _invoices_tab(page)
    expect(page.locator(".cbp-invoices")).to_contain_text(RU["inv_empty"])
    page.locator('.cbp-action[data-action="issue-invoice"]').click()
    form = page.locator('form[data-form="issue-invoice"]')
    expect(form).to_be_visible()

    # Nothing filled: the browser refuses before any request, beside the fields.
    posts = len(clinic.posts)
    form.get_by_role("button", name=RU["inv_issue_submit"]).click()
    expect(_error(form, "details.gop_no")).to_have_text(RU["v_required"])
    expect(_error(form, "lines[0].name")).to_have_text(RU["v_required"])
    assert len(clinic.posts) == posts

    _field(form, "kind").select_option("insurer")
    _field(form, "counterparty_id").select_option(str(clinic.ids["insurer"]))
    _field(form, "price_currency").select_option("EUR")
    _field(form, "invoice_currency").select_option("RUB")
    _field(form, "issue_date").fill("2025-12-14")
    for name, value in INSURER_DETAILS.items():
        _field(form, f"details.{name}").fill(value)
    for i, line in enumerate(INSURER_LINES):
        if i:
            form.locator(".cbp-line-add").click()
            form = page.locator('form[data-form="issue-invoice"]')  # rebuilt with the values kept
        _field(form, f"lines[{i}].name").fill(line["name"])
        _field(form, f"lines[{i}].quantity").fill(line["quantity"])
        _field(form, f"lines[{i}].unit_price").fill(line["unit_price"].replace(".", ","))
    expect(_field(form, "details.gop_no")).to_have_value(INSURER_DETAILS["gop_no"])
    expect(_field(form, "counterparty_id")).to_have_value(str(clinic.ids["insurer"]))

    # A zero quantity has the right shape, so the server judges it: its reason beside that line's field.
    _field(form, "lines[2].quantity").fill("0")
    key = form.get_attribute("data-key")
    form.get_by_role("button", name=RU["inv_issue_submit"]).click()
    expect(_error(form, "lines[2].quantity")).to_have_text("Должно быть больше нуля")
    expect(_field(form, "lines[2].quantity")).to_have_attribute("aria-invalid", "true")
    assert _rows(rt, Invoice) == 0
    assert form.get_attribute("data-key") != key  # a definite refusal: the corrected form is a new request

    _field(form, "lines[2].quantity").fill("3")
    form.get_by_role("button", name=RU["inv_issue_submit"]).click()
    result = page.locator(".cbp-invoice-result")
    expect(result).to_be_visible()
    expect(result.locator(".cbp-invoice-number")).to_have_text("№ СК-2025-000001")
    assert plain(result.locator(".cbp-invoice-total").inner_text()) == "146 462,13 ₽"
    assert plain(result.locator(".cbp-invoice-price-total").inner_text()) == "1 565,75 €"
    expect(result.locator(".cbp-invoice-rate")).to_have_text("Курс ЦБ РФ на 13.12.2025: 1 EUR = 93,5412 ₽")
    expect(result.locator(".cbp-invoice-words")).to_have_text(
        "Сто сорок шесть тысяч четыреста шестьдесят два рубля 13 копеек"
    )
    assert _rows(rt, Invoice) == 1
    item = page.locator(".cbp-invoice-list li[data-invoice]")
    expect(item).to_have_attribute("data-status", "issued")
    expect(item.locator("[data-pdf]")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 320

    item.locator('[data-invoice-action="pay"]').click()
    pay = page.locator('form[data-form="invoice-payment"]')
    expect(pay).to_be_visible()
    _field(pay, "amount").fill("200000")
    pay.get_by_role("button", name=RU["inv_pay"]).click()
    # More than is owed: the server's reason, beside the amount.
    expect(_error(pay, "amount")).not_to_be_empty()
    assert _rows(rt, InvoicePayment) == 0
    _field(pay, "amount").fill("50 000,00")
    _field(pay, "bank_reference").fill("п/п 118")
    pay.get_by_role("button", name=RU["inv_pay"]).click()
    expect(item).to_have_attribute("data-status", "partly_paid")
    expect(item.locator(".cbp-badge")).to_have_text(RU["is_partly_paid"])
    expect(item.locator(".cbp-debt")).to_contain_text("96 462,13 ₽")
    assert _rows(rt, InvoicePayment) == 1
    with rt.db.transaction() as s:
        assert s.scalar(select(Invoice.status)) == "partly_paid"
    owed = page.locator('.cbp-settlements [data-settlement="insurer-RUB"]')
    expect(owed).to_contain_text(f"{RU['inv_outstanding']} 96 462,13 ₽")
    expect(owed).to_contain_text(f"{RU['inv_paid']} 50 000,00 ₽")


def test_credit_note_by_lines_needs_a_reason_and_a_line(open_card, clinic, rt):
    payer = clinic.api("POST", "/api/v1/counterparties", PATIENT_PAYER)
    invoice = clinic.api(
        "POST",
        "/api/v1/deals/501/invoices",
        {
            "kind": "patient",
            "counterparty_id": payer["id"],
            "issue": True,
            "lines": [
                {"name": "Массаж", "quantity": "2", "unit_price": "1500.00"},
                {"name": "ЛФК", "quantity": "1", "unit_price": "800.00"},
            ],
        },
    )
    page = open_card(FINANCE, width=320)
    _invoices_tab(page)
    item = page.locator(f'.cbp-invoice-list li[data-invoice="{invoice["id"]}"]')
    item.locator('[data-invoice-action="credit"]').click()
    form = page.locator('form[data-form="credit-note"]')
    _field(form, "scope").select_option("lines")
    form.get_by_role("button", name=RU["inv_credit"]).click()
    expect(_error(form, "reason")).to_have_text(RU["v_required"])
    _field(form, "reason").fill("Страховая не оплачивает ЛФК")
    form.get_by_role("button", name=RU["inv_credit"]).click()
    expect(_error(form, "scope")).to_have_text(RU["v_credit_lines"])
    form.get_by_label("ЛФК", exact=False).check()
    form.get_by_role("button", name=RU["inv_credit"]).click()
    expect(form).to_have_count(0)
    expect(page.locator(".cbp-toast")).to_contain_text(RU["done_credit_note"].split(":")[0])
    lines = clinic.api("GET", f"/api/v1/invoices/{invoice['id']}")["lines"]
    assert [bool(line["credited"]) for line in lines] == [False, True]


def test_staff_sees_statuses_and_no_forms(open_card, clinic):
    payer = clinic.api("POST", "/api/v1/counterparties", PATIENT_PAYER)
    clinic.api(
        "POST",
        "/api/v1/deals/501/invoices",
        {
            "kind": "patient",
            "counterparty_id": payer["id"],
            "issue": True,
            "lines": [{"name": "Массаж", "quantity": "2", "unit_price": "1500.00"}],
        },
    )
    page = open_card(STAFF, width=320)
    _invoices_tab(page)
    item = page.locator(".cbp-invoice-list li[data-invoice]")
    expect(item).to_have_attribute("data-status", "issued")
    expect(item.locator(".cbp-badge")).to_have_text(RU["is_issued"])
    assert page.locator('[data-action="issue-invoice"]').count() == 0
    assert page.locator("[data-invoice-action]").count() == 0
    assert page.locator("form").count() == 0
    assert page.locator(".cbp-settlements").count() == 0
    assert "3 000,00" not in plain(page.locator(".cbp-invoices").inner_text())


def _issued_patient_invoice(live) -> dict:  # type: ignore[no-untyped-def]
    payer = live.api("POST", "/api/v1/counterparties", PATIENT_PAYER)
    return live.api(
        "POST",
        "/api/v1/deals/501/invoices",
        {
            "kind": "patient",
            "counterparty_id": payer["id"],
            "issue": True,
            "lines": [{"name": "Массаж", "quantity": "2", "unit_price": "1500.00"}],
        },
    )


def test_a_network_error_is_worded_and_the_retry_replays_one_payment(open_card, clinic, rt):
    invoice = _issued_patient_invoice(clinic)
    page = open_card(FINANCE)
    _invoices_tab(page)
    item = page.locator(f'.cbp-invoice-list li[data-invoice="{invoice["id"]}"]')
    item.locator('[data-invoice-action="pay"]').click()
    pay = page.locator('form[data-form="invoice-payment"]')
    _field(pay, "amount").fill("1000")
    key = pay.get_attribute("data-key")
    clinic.failing["api"] = True
    try:
        pay.get_by_role("button", name=RU["inv_pay"]).click()
        expect(pay.locator(".cbp-form-error")).to_contain_text(RU["error_server"])
        assert _rows(rt, InvoicePayment) == 0
    finally:
        clinic.failing["api"] = False
    assert pay.get_attribute("data-key") == key  # outcome unknown: the retry must replay the same key
    pay.locator(".cbp-retry").click()
    expect(item).to_have_attribute("data-status", "partly_paid")
    assert _rows(rt, InvoicePayment) == 1


def test_missing_kpp_is_shown_beside_the_counterparty_and_consumes_no_number(open_card, live, rt, cbr_http):
    with rt.db.transaction() as s:
        portal = s.get(Portal, live.portal_id)
        portal.settings = {
            **(portal.settings or {}),
            "invoices": {"clinic": CLINIC_REQUISITES, "vat_payer": True},
        }
    requisites = {k: v for k, v in INSURER["requisites"].items() if k != "kpp"}
    insurer = live.api("POST", "/api/v1/counterparties", {**INSURER, "requisites": requisites})
    page = open_card(FINANCE, width=320)
    _invoices_tab(page)
    page.locator('.cbp-action[data-action="issue-invoice"]').click()
    form = page.locator('form[data-form="issue-invoice"]')
    _field(form, "counterparty_id").select_option(str(insurer["id"]))
    for name, value in INSURER_DETAILS.items():
        _field(form, f"details.{name}").fill(value)
    _field(form, "lines[0].name").fill("Консультация")
    _field(form, "lines[0].unit_price").fill("4500")
    form.get_by_role("button", name=RU["inv_issue_submit"]).click()
    expect(_error(form, "counterparty_id")).not_to_be_empty()
    expect(_field(form, "counterparty_id")).to_have_attribute("aria-invalid", "true")
    assert _rows(rt, Invoice) == 0  # not even a draft: the refused issue rolled the whole request back
