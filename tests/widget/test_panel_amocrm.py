"""The common panel inside the amoCRM shell, in headless Chromium over the stub amo deal card.

What the user sees (texts from the panel's i18n) and what the database holds afterwards are both asserted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from widget_server.models import (
    DistributionDecision,
    LedgerEntry,
    OperatorState,
    PortalSettingsVersion,
    PortalUser,
    PurchaseRequest,
    StayAccount,
)

from .conftest import ADMIN, EN, FINANCE, HAVE_CHROMIUM, NO_ROLE, RU, STAFF, VIEWER, plain

if not HAVE_CHROMIUM:
    pytest.skip("Debian chromium missing (scripts/test.sh installs it)", allow_module_level=True)

from playwright.sync_api import expect


def _entries(rt, kind: str | None = None) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        statement = select(func.count()).select_from(LedgerEntry)
        if kind:
            statement = statement.where(LedgerEntry.kind == kind)
        return s.scalar(statement)


def _balance(page) -> str:  # type: ignore[no-untyped-def]
    return plain(page.locator(".cbp-balance").inner_text())


def _form(page, name: str):  # type: ignore[no-untyped-def]
    page.locator(f'.cbp-action[data-action="{name}"]').click()
    form = page.locator(f'form[data-form="{name}"]')
    expect(form).to_be_visible()
    return form


def _field_error(form, name: str):  # type: ignore[no-untyped-def]
    return form.locator(f'.cbp-field-error[data-field="{name}"]')


def test_finance_user_sees_balance_rate_and_paid_through(open_card, live):
    page = open_card(FINANCE)
    expect(page.locator(".cbp-balance")).to_be_visible()
    assert _balance(page) == "35 000,00 ₽"
    text = plain(page.locator(".cbp").inner_text())
    assert f"{RU['paid_through']} 10.12.2026" in text  # 35 000 / 3 500 a day from 1 Dec
    assert f"{RU['daily_rate']} 3 500,00 ₽" in text
    assert f"{RU['available']} 35 000,00 ₽" in text
    assert RU["days_left"] in text
    assert page.locator(".cbp-debt").count() == 0
    calls = page.evaluate("window.__ajaxLog")
    assert calls == [f"{live.origin}/api/v1/widget/session", f"{live.origin}/api/v1/deals/501/stay"]


def test_seed_000_story_in_the_amo_card(open_card, live, rt):
    """Top-up → charge (a refused one first, error beside the amount) → purchase → consent → reversal
    by an admin → discharge with refund: the screen and the ledger agree at every step."""
    page = open_card(FINANCE)
    expect(page.locator(".cbp-balance")).to_have_text("35 000,00 ₽")

    form = _form(page, "deposit")
    form.get_by_label(RU["f_amount"]).fill("15 000,5")
    form.get_by_role("button", name=RU["a_deposit"]).click()
    expect(page.locator(".cbp-balance")).to_have_text("50 000,50 ₽")
    expect(page.locator(".cbp-toast")).to_have_text(RU["done_deposit"])
    assert _entries(rt, "deposit") == 2

    form = _form(page, "charge")
    form.get_by_label(RU["f_amount"]).fill("abc")
    form.get_by_role("button", name=RU["a_charge"]).click()
    expect(_field_error(form, "amount")).to_have_text(RU["v_amount"])
    assert live.posts == ["/api/v1/deals/501/stay/deposits"]  # refused in the browser, never sent
    form.get_by_label(RU["f_amount"]).fill("90000")
    form.get_by_label(RU["f_article"]).select_option(label="Лекарства")
    form.get_by_role("button", name=RU["a_charge"]).click()
    expect(_field_error(form, "amount")).to_have_text(RU["e_insufficient_funds"])
    expect(_field_error(form, "article_id")).to_be_empty()
    assert _entries(rt, "charge") == 0
    form.get_by_label(RU["f_amount"]).fill("1200")
    form.get_by_label(RU["f_reason"]).fill("Перевязочный материал")
    form.get_by_role("button", name=RU["a_charge"]).click()
    expect(page.locator(".cbp-balance")).to_have_text("48 800,50 ₽")
    assert _entries(rt, "charge") == 1

    form = _form(page, "purchase")
    form.get_by_label(RU["f_description"]).fill("Противопролежневый матрас")
    form.get_by_label(RU["f_amount"]).fill("8000")
    form.get_by_role("button", name=RU["a_purchase"]).click()
    pending = page.locator(".cbp-pending .cbp-item")
    expect(pending).to_have_count(1)
    expect(page.locator(".cbp-available")).to_have_text("40 800,50 ₽")  # held, not yet charged
    pending.get_by_role("button", name=RU["a_approve"]).click()
    consent = page.locator('form[data-form="approve"]')
    consent.get_by_label(RU["f_given_by"]).fill("")
    consent.get_by_role("button", name=RU["a_approve"]).click()
    expect(_field_error(consent, "consent.given_by")).to_have_text(RU["v_required"])
    consent.get_by_label(RU["f_given_by"]).fill("Елена Орлова (дочь)")
    consent.get_by_role("button", name=RU["a_approve"]).click()
    expect(page.locator(".cbp-pending")).to_have_count(0)
    expect(page.locator(".cbp-balance")).to_have_text("40 800,50 ₽")
    with rt.db.transaction() as s:
        purchase = s.scalars(select(PurchaseRequest)).one()
        assert (purchase.status, purchase.consent_by, purchase.consent_channel) == (
            "approved",
            "Елена Орлова (дочь)",
            "phone",
        )

    # The finance user has no reversal; the admin does, and a reason is required.
    assert page.get_by_role("button", name=RU["a_reverse"]).count() == 0
    page = open_card(ADMIN)
    charge_row = page.locator('.cbp-entries .cbp-item[data-kind="charge"]')
    charge_row.get_by_role("button").click()
    reversal = page.locator('form[data-form="reversal"]')
    reversal.get_by_role("button", name=RU["a_reverse"]).click()
    expect(_field_error(reversal, "reason")).to_have_text(RU["v_required"])
    reversal.get_by_label(RU["f_reason"]).fill("Списано по ошибке")
    reversal.get_by_role("button", name=RU["a_reverse"]).click()
    expect(page.locator(".cbp-balance")).to_have_text("42 000,50 ₽")
    assert _entries(rt, "reversal") == 1

    form = _form(page, "discharge")
    form.get_by_label(RU["f_refund_method"]).select_option("card")
    form.get_by_role("button", name=RU["a_discharge"]).click()
    expect(page.locator(".cbp-badge")).to_have_text(RU["status_closed"])
    expect(page.locator(".cbp-balance")).to_have_text("0,00 ₽")
    assert page.locator(".cbp-action").count() == 0
    with rt.db.transaction() as s:
        account = s.scalars(select(StayAccount)).one()
        assert account.status == "closed"
        refund = s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "refund")).one()
        assert (refund.amount_minor, refund.method) == (4_200_050, "card")


def test_double_click_on_charge_posts_one_entry(open_card, live, rt):
    page = open_card(FINANCE)
    form = _form(page, "charge")
    form.get_by_label(RU["f_amount"]).fill("700")
    form.get_by_label(RU["f_article"]).select_option(label="Лекарства")
    form.get_by_role("button", name=RU["a_charge"]).dblclick()
    expect(page.locator(".cbp-balance")).to_have_text("34 300,00 ₽")
    page.wait_for_timeout(300)
    assert _entries(rt, "charge") == 1
    assert live.posts.count("/api/v1/deals/501/stay/charges") <= 2  # at most a replay, never a repeat
    keys = {
        c["headers"].get("Idempotency-Key")
        for c in page.evaluate("window.__ajaxCalls")
        if c["method"] == "POST"
    }
    assert len(keys) == 1 and None not in keys


def test_retry_after_a_lost_answer_replays_instead_of_posting_twice(open_card, live, rt):
    page = open_card(FINANCE)
    form = _form(page, "deposit")
    form.get_by_label(RU["f_amount"]).fill("1000")
    state = {"cut": True}

    def lose_answer(route):  # type: ignore[no-untyped-def]
        if state["cut"] and route.request.method == "POST":
            route.fetch()  # the server commits the deposit...
            route.abort("connectionreset")  # ...but the answer never arrives
            state["cut"] = False
        else:
            route.continue_()

    page.route("**/api/v1/deals/501/stay/deposits", lose_answer)
    form.get_by_role("button", name=RU["a_deposit"]).click()
    expect(form.locator(".cbp-form-error")).to_contain_text(RU["error_network"])
    assert _entries(rt, "deposit") == 2
    form.locator(".cbp-form-error").get_by_role("button", name=RU["retry"]).click()
    expect(page.locator(".cbp-balance")).to_have_text("36 000,00 ₽")
    assert _entries(rt, "deposit") == 2  # the replayed answer, not a second deposit


def test_staff_user_sees_status_and_dates_but_no_money(open_card, live):
    page = open_card(STAFF)
    expect(page.locator(".cbp-paid-through")).to_have_text("10.12.2026")
    text = plain(page.locator(".cbp").inner_text())
    assert page.locator(".cbp-balance").count() == 0 and page.locator(".cbp-action").count() == 0
    assert RU["balance"] not in text and RU["money_hidden"] in text
    assert "₽" not in text and "35" not in text and "000" not in text
    page.get_by_role("tab", name=RU["tab_forecast"]).click()
    text = plain(page.locator(".cbp").inner_text())
    assert "₽" not in text and page.locator("svg").count() == 0
    assert page.get_by_role("tab", name=RU["tab_statement"]).count() == 0


def test_user_without_a_role_is_told_to_ask_for_one(open_card, live):
    for user in (NO_ROLE, VIEWER):
        page = open_card(user)
        expect(page.locator(".cbp")).to_contain_text(RU["no_role"])
        assert page.locator(".cbp-retry").count() == 0  # retrying cannot give a role


def test_deal_without_a_stay_offers_admission(open_card, live, rt):
    page = open_card(FINANCE, deal_id=999)
    expect(page.locator(".cbp")).to_contain_text(RU["no_stay"])
    form = _form(page, "admit")
    form.get_by_label(RU["f_admission_date"]).fill("2026-12-01")
    form.get_by_label(RU["f_tariff"]).select_option(label="Люкс · 5 000,00 ₽")
    form.get_by_label(RU["f_deposit_amount"]).fill("10000")
    form.get_by_label(RU["f_method"]).select_option("cash")
    form.get_by_role("button", name=RU["a_admit"]).click()
    expect(page.locator(".cbp-balance")).to_have_text("10 000,00 ₽")
    expect(page.locator(".cbp-paid-through")).to_have_text("02.12.2026")
    with rt.db.transaction() as s:
        assert (
            s.scalar(select(func.count()).select_from(StayAccount).where(StayAccount.deal_id == "999")) == 1
        )


@pytest.mark.parametrize("outage", ["http-500", "unreachable"])
def test_outage_shows_an_error_in_words_and_retry_recovers(open_card, live, outage):
    api = f"{live.origin}/api/**"

    def refuse(route):  # type: ignore[no-untyped-def]
        route.abort("connectionrefused")

    def cut_off(context):  # type: ignore[no-untyped-def]
        context.route(api, refuse)  # the API only: the page and the panel module still load

    if outage == "http-500":
        live.failing["api"] = True
    page = open_card(FINANCE, before_goto=cut_off if outage == "unreachable" else None)
    expected = RU["error_server"] if outage == "http-500" else RU["error_network"]
    expect(page.locator(".cbp-error")).to_have_text(expected)
    retry = page.get_by_role("button", name=RU["retry"])
    assert page.locator(".cbp-balance").count() == 0
    if outage == "http-500":
        live.failing["api"] = False
    else:
        page.context.unroute(api, refuse)
    retry.click()
    expect(page.locator(".cbp-balance")).to_have_text("35 000,00 ₽")
    assert page.locator(".cbp-error").count() == 0


def test_statement_filters_and_downloads(open_card, live):
    live.api(
        "POST", "/api/v1/deals/501/stay/charges", {"amount": "500.00", "article_id": live.ids["article"]}
    )
    page = open_card(FINANCE)
    page.get_by_role("tab", name=RU["tab_statement"]).click()
    rows = page.locator(".cbp-table tbody tr")
    expect(rows).to_have_count(2)  # the opening deposit and the charge
    page.get_by_label(RU["f_kind"]).select_option("deposit")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td").last).to_have_text("35 000,00 ₽")
    for label, magic in ((RU["download_csv"], b""), (RU["download_pdf"], b"%PDF")):
        with page.expect_download() as info:
            page.get_by_role("button", name=label).click()
        data = Path(info.value.path()).read_bytes()
        assert data.startswith(magic) and len(data) > 20
    assert info.value.suggested_filename == "statement-deal-501.pdf"


def test_forecast_chart_marks_the_paid_through_date(open_card, live):
    page = open_card(FINANCE)
    page.get_by_role("tab", name=RU["tab_forecast"]).click()
    chart = page.locator("svg.cbp-chart")
    expect(chart).to_be_visible()
    assert chart.locator(".cbp-chart-paid").count() == 1
    expect(chart.locator(".cbp-chart-paid-label")).to_have_text("10.12.2026")
    expect(page.locator(".cbp-forecast-caption")).to_contain_text("10.12.2026")


def test_english_and_keyboard(open_card, live):
    page = open_card(FINANCE, lang="en")
    expect(page.locator(".cbp-balance")).to_have_text("35 000,00 ₽")  # money in the portal's locale
    expect(page.get_by_role("tab", name=EN["tab_account"])).to_be_visible()
    page.locator(".cbp-tab").first.focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name=EN["tab_statement"])).to_be_focused()
    expect(page.locator(".cbp-table")).to_be_visible()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Tab")
    expect(page.locator('.cbp-action[data-action="deposit"]')).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label(EN["f_amount"])).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


@pytest.mark.parametrize("width", [280, 320])
def test_panel_fits_a_phone_width(open_card, live, width):
    page = open_card(FINANCE, width=width)
    expect(page.locator(".cbp-balance")).to_be_visible()
    _form(page, "charge")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = page.locator(".cbp").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def test_no_layout_shift_while_the_summary_loads(open_card, live):
    """The skeleton holds the tab bar's and the summary's places: the card's top does not move when the
    data arrives (recorded on every DOM change while the stay answer is held back)."""

    def slow_stay(context):  # type: ignore[no-untyped-def]
        context.add_init_script(
            "window.__tops = []; new MutationObserver(() => {"
            " const card = document.querySelector('.cbp-summary'); if (card) window.__tops.push("
            "[card.closest('.cbp-loading') ? 'skeleton' : 'data',"
            " Math.round(card.getBoundingClientRect().top)]);"
            " })"
            ".observe(document, {childList: true, subtree: true});"
        )

        def delay(route):  # type: ignore[no-untyped-def]
            time.sleep(0.3)
            route.continue_()

        context.route("**/api/v1/deals/501/stay", delay)

    page = open_card(FINANCE, before_goto=slow_stay)
    expect(page.locator(".cbp-balance")).to_be_visible()
    tops = page.evaluate("window.__tops")
    skeleton = {top for kind, top in tops if kind == "skeleton"}
    data = {top for kind, top in tops if kind == "data"}
    assert skeleton and data and skeleton == data, tops


def test_invoices_section_lists_the_deals_invoices_money_for_finance_only(open_card, live):
    payer = live.api(
        "POST",
        "/api/v1/counterparties",
        {"kind": "payer", "name": "Иванова Мария Петровна", "currency": "RUB"},
    )
    line = {"name": "Пребывание в стационаре, койко-день", "quantity": "2", "unit_price": "3500.00"}
    body = {"kind": "patient", "counterparty_id": payer["id"], "lines": [line]}
    draft = live.api("POST", "/api/v1/deals/501/invoices", body)
    issued = live.api("POST", "/api/v1/deals/501/invoices", {**body, "issue": True})
    assert issued["status"] == "issued" and issued["number"]

    page = open_card(FINANCE)
    page.get_by_role("tab", name=RU["tab_invoices"]).click()
    items = page.locator(".cbp-invoices [data-invoice]")
    expect(items).to_have_count(2)
    first, second = items.nth(0), items.nth(1)
    expect(first).to_contain_text(RU["inv_draft_number"])
    assert first.get_attribute("data-invoice") == str(draft["id"])
    expect(second).to_contain_text(f"№ {issued['number']}")
    expect(second).to_contain_text(RU["is_issued"])
    assert "7 000,00 ₽" in plain(second.inner_text())
    assert first.locator("[data-pdf]").count() == 0
    expect(second.get_by_role("button", name=RU["inv_pdf"])).to_be_visible()

    page = open_card(STAFF)
    page.get_by_role("tab", name=RU["tab_invoices"]).click()
    expect(page.locator(".cbp-invoices [data-invoice]")).to_have_count(2)
    assert "₽" not in page.locator(".cbp-invoices").inner_text()


def test_issued_invoice_pdf_downloads_from_the_panel(open_card, live):
    payer = live.api(
        "POST", "/api/v1/counterparties", {"kind": "payer", "name": "Иванова Мария", "currency": "RUB"}
    )
    line = {"name": "Койко-день", "quantity": "1", "unit_price": "3500.00"}
    live.api(
        "POST",
        "/api/v1/deals/501/invoices",
        {"kind": "patient", "counterparty_id": payer["id"], "lines": [line], "issue": True},
    )
    page = open_card(FINANCE)
    page.get_by_role("tab", name=RU["tab_invoices"]).click()
    with page.expect_download(timeout=3_000) as info:
        page.locator("[data-pdf]").click()
    assert Path(info.value.path()).read_bytes().startswith(b"%PDF")


def test_operators_board_and_the_users_own_working_day(open_card, live, rt):
    page = open_card(STAFF)
    page.get_by_role("tab", name=RU["tab_operators"]).click()
    board = page.locator(".cbp-operators")
    with rt.db.transaction() as s:
        ids = {u.crm_user_id: u.id for u in s.scalars(select(PortalUser))}
    mine = board.locator(f'[data-operator="{ids[str(STAFF)]}"]')
    other = board.locator(f'[data-operator="{ids[str(FINANCE)]}"]')
    expect(mine).to_be_visible()
    assert other.get_by_role("button").count() == 0  # an operator sets only their own status
    mine.get_by_role("button", name=RU["op_set_on_shift"]).click()
    expect(mine).to_have_attribute("data-status", "on_shift")
    expect(mine).to_contain_text(RU["os_on_shift"])
    with rt.db.transaction() as s:
        state = s.scalars(select(OperatorState).where(OperatorState.user_id == ids[str(STAFF)])).one()
        assert state.state == "on_shift"


def test_distribute_the_deal_says_what_happened(open_card, live, rt):
    page = open_card(ADMIN)
    page.get_by_role("tab", name=RU["tab_operators"]).click()
    page.locator('[data-action="assign"]').dblclick()
    expect(page.locator(".cbp-assign-result")).to_have_text(RU["op_unmatched"].replace("{reason}", "no_rule"))
    page.wait_for_timeout(300)
    with rt.db.transaction() as s:  # a double click is one request or its replay: one decision
        assert s.scalar(select(func.count()).select_from(DistributionDecision)) == 1


def test_tariff_change_from_a_date_and_a_refused_purchase(open_card, live, rt):
    page = open_card(FINANCE)
    form = _form(page, "tariff")
    form.get_by_label(RU["f_tariff"]).select_option(label="Люкс · 5 000,00 ₽")
    expect(form.get_by_label(RU["f_effective_from"])).to_have_value("2026-12-02")  # tomorrow by default
    form.get_by_label(RU["f_effective_from"]).fill("2026-12-03")
    form.get_by_role("button", name=RU["a_tariff"]).click()
    # 1–2 Dec at 3 500, then 5 000 a day: 35 000 covers 1–7 Dec (7 000 + 25 000 = 32 000, 3 000 left).
    expect(page.locator(".cbp-paid-through")).to_have_text("07.12.2026")
    expect(page.locator(".cbp-toast")).to_have_text(RU["done_tariff"])

    form = _form(page, "purchase")
    form.get_by_label(RU["f_description"]).fill("Ортопедическая подушка")
    form.get_by_label(RU["f_amount"]).fill("2500")
    form.get_by_role("button", name=RU["a_purchase"]).click()
    pending = page.locator(".cbp-pending .cbp-item")
    expect(pending).to_have_count(1)
    pending.get_by_role("button", name=RU["a_reject"]).click()
    reject = page.locator('form[data-form="reject"]')
    reject.get_by_label(RU["f_note"]).fill("Дочь купит сама")
    reject.get_by_role("button", name=RU["a_reject"]).click()
    expect(page.locator(".cbp-pending")).to_have_count(0)
    expect(page.locator(".cbp-available")).to_have_text("35 000,00 ₽")  # the hold is released
    with rt.db.transaction() as s:
        assert s.scalars(select(PurchaseRequest.status)).one() == "rejected"
        assert (
            s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "purchase")) == 0
        )


def test_a_refusal_from_the_ledger_is_worded_in_russian(open_card, live):
    deposit = live.client.get(
        "/api/v1/deals/501/stay", headers={"Authorization": f"Bearer {live.admin_key}"}
    ).get_json()["recent_entries"][0]
    live.api("POST", f"/api/v1/deals/501/stay/entries/{deposit['id']}/reversal", {"reason": "ошибка кассы"})
    page = open_card(ADMIN)
    row = page.locator(f'.cbp-entries [data-entry="{deposit["id"]}"]')
    row.get_by_role("button", name=f"{RU['a_reverse']} №{deposit['seq']}").click()
    form = page.locator('form[data-form="reversal"]')
    form.get_by_label(RU["f_reason"]).fill("ещё раз")
    form.get_by_role("button", name=RU["a_reverse"]).click()
    expect(form.locator(".cbp-form-error")).to_contain_text("Операция уже сторнирована")


def test_amo_advanced_settings_page_mounts_the_settings_screen(open_card, live, rt):
    """This amo account has no OAuth tokens in the test, so the CRM's lists cannot be read: the screen
    says so with a retry, and the settings that do not point into the CRM can still be saved."""
    page = open_card(ADMIN, view="settings")
    form = page.locator('#work-area-clinicbridge form[data-form="settings"]')
    expect(form).to_be_visible()
    expect(page.locator(".cbp-crm-down")).to_contain_text(RU["s_crm_down"])
    assert page.locator(".cbp-crm-down").get_by_role("button", name=RU["retry"]).count() == 1
    assert "Ирина" in form.inner_text()  # roles from the synced users
    assert page.locator("#work-area-clinicbridge .cbp-balance").count() == 0
    form.get_by_label(RU["s_low_days"]).fill("5")
    form.get_by_role("button", name=RU["s_save"]).click()
    expect(page.locator("#work-area-clinicbridge .cbp-toast")).to_have_text(
        RU["s_saved"].replace("{version}", "1")
    )
    with rt.db.transaction() as s:
        version = s.scalars(select(PortalSettingsVersion)).one()
        assert version.changed_by == f"user:{ADMIN}"
        assert version.changes == {"ledger.low_balance_days": {"from": 3, "to": 5}}


def test_amo_settings_page_tells_a_non_admin_about_access(open_card, live):
    page = open_card(FINANCE, view="settings")
    expect(page.locator("#work-area-clinicbridge .cbp")).to_contain_text(RU["no_role"])
