"""The issue form after a submit whose outcome is unknown (the answer lost on the way back): adding a line
and submitting again reuses the first request's Idempotency-Key, so the server never issues a second
invoice; a refusal is worded in Russian beside its field. Headless Chromium on the amoCRM shell."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.invoices.helpers import PATIENT_PAYER
from widget_server.models import Invoice, InvoiceLine

from .conftest import FINANCE, HAVE_CHROMIUM, RU
from .test_panel_invoices import _error, _field, _invoices_tab, clinic  # noqa: F401 (a fixture)

if not HAVE_CHROMIUM:
    pytest.skip("Debian chromium missing (scripts/test.sh installs it)", allow_module_level=True)

from playwright.sync_api import expect

ISSUE = "**/api/v1/deals/*/invoices"


def _count(rt, model) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def _issue_form(page, payer_id: int):  # type: ignore[no-untyped-def]
    _invoices_tab(page)
    page.locator('.cbp-action[data-action="issue-invoice"]').click()
    form = page.locator('form[data-form="issue-invoice"]')
    _field(form, "kind").select_option("patient")
    form = page.locator('form[data-form="issue-invoice"]')  # rebuilt for the kind
    _field(form, "counterparty_id").select_option(str(payer_id))
    _field(form, "lines[0].name").fill("Консультация")
    _field(form, "lines[0].unit_price").fill("3500")
    return form


def _keys(page, sent: list[str]) -> None:  # type: ignore[no-untyped-def]
    page.on(
        "request",
        lambda r: sent.append(r.headers.get("idempotency-key", ""))
        if r.method == "POST" and "/invoices" in r.url
        else None,
    )


@pytest.mark.parametrize("applied", [True, False], ids=["answer-lost", "never-arrived"])
def test_adding_a_line_after_a_network_error_reuses_the_key(open_card, clinic, rt, applied):  # noqa: F811
    payer = clinic.api("POST", "/api/v1/counterparties", PATIENT_PAYER)
    page = open_card(FINANCE)
    sent: list[str] = []
    _keys(page, sent)
    form = _issue_form(page, payer["id"])

    def lose(route):  # type: ignore[no-untyped-def]
        if applied:
            route.fetch()  # the server issues the invoice; its answer never reaches the panel
        route.abort("connectionreset")

    page.route(ISSUE, lose)
    form.get_by_role("button", name=RU["inv_issue_submit"]).click()
    expect(form.locator(".cbp-form-error")).to_be_visible()
    page.unroute(ISSUE)
    assert _count(rt, Invoice) == (1 if applied else 0)

    form.locator(".cbp-line-add").click()
    form = page.locator('form[data-form="issue-invoice"]')
    _field(form, "lines[1].name").fill("Трансфер")
    _field(form, "lines[1].unit_price").fill("2500")
    form.get_by_role("button", name=RU["inv_issue_submit"]).click()

    if applied:
        # The key is the first request's, the body is not: refused, said in Russian, and the list shows
        # the invoice the lost answer was about.
        expect(form.locator(".cbp-form-error")).to_contain_text("Форма уже была отправлена")
        expect(page.locator(".cbp-invoice-list li[data-invoice]")).to_have_count(1)
    else:
        expect(page.locator(".cbp-invoice-result")).to_be_visible()
        assert _count(rt, InvoiceLine) == 2
    assert _count(rt, Invoice) == 1
    assert len(sent) == 2 and sent[0] == sent[1]


def test_a_server_refusal_is_worded_in_russian_beside_its_field(open_card, clinic, rt):  # noqa: F811
    payer = clinic.api("POST", "/api/v1/counterparties", PATIENT_PAYER)
    page = open_card(FINANCE)
    form = _issue_form(page, payer["id"])
    _field(form, "lines[0].quantity").fill("0")

    form.get_by_role("button", name=RU["inv_issue_submit"]).click()

    expect(_error(form, "lines[0].quantity")).to_have_text("Должно быть больше нуля")
    assert _count(rt, Invoice) == 0
