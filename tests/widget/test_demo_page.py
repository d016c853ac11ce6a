"""The demo page hosts both shells over the sandbox portal: seed 000's story clicked through in the
Bitrix24 shell (tab.js over a stubbed BX24), then the amoCRM shell on the same page shows the outcome."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from widget_server.cli.demo import ensure_demo
from widget_server.models import (
    LedgerEntry,
    OutboxJob,
    Portal,
    PortalSettingsVersion,
    PortalUser,
    PurchaseRequest,
    StayAccount,
)
from widget_server.sandbox.models import SandboxDeal

from .conftest import EN, HAVE_CHROMIUM, RU

if not HAVE_CHROMIUM:
    pytest.skip("Debian chromium missing (scripts/test.sh installs it)", allow_module_level=True)

from playwright.sync_api import expect


@pytest.fixture
def demo(live, rt):  # type: ignore[no-untyped-def]
    info = ensure_demo(rt)
    with rt.db.transaction() as s:
        open_deals = set(
            s.scalars(select(StayAccount.deal_id).where(StayAccount.portal_id == info["portal_id"]))
        )
        deals = [
            str(d)
            for d in s.scalars(select(SandboxDeal.id).where(SandboxDeal.portal_id == info["portal_id"]))
        ]
    info["new_deal"] = next(d for d in deals if d not in open_deals)
    info["in_stay"] = sorted(open_deals)[0]
    return info


def _open(browser, live, demo, deal: str, lang: str = "ru", width: int = 1280):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.set_default_timeout(8_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live.origin}/static/widget/demo/#key={demo['api_key']}&deal={deal}&lang={lang}")
    return page, errors


def _submit(frame, form: str, label: str):  # type: ignore[no-untyped-def]
    frame.locator(f'form[data-form="{form}"]').get_by_role("button", name=label).click()


def test_seed_000_story_in_the_bitrix24_shell_on_the_demo_page(browser, live, demo, rt):
    page, errors = _open(browser, live, demo, demo["new_deal"])
    b24 = page.frame_locator("#b24")
    expect(b24.locator(".cbp")).to_contain_text(RU["no_stay"])

    b24.locator('[data-action="admit"]').click()
    form = b24.locator('form[data-form="admit"]')
    form.get_by_label(RU["f_admission_date"]).fill("2026-12-01")
    form.get_by_label(RU["f_tariff"]).select_option(label="Стандарт · 3 500,00 ₽")
    form.get_by_label(RU["f_deposit_amount"]).fill("20000")
    form.get_by_label(RU["f_representative"]).fill("Ирина Белова (жена)")
    form.get_by_label(RU["f_representative_phone"]).fill("12")
    _submit(b24, "admit", RU["a_admit"])
    error = form.locator('.cbp-field-error[data-field="representative.phone"]')
    expect(error).to_have_text("Не похоже на номер телефона")  # the server's reason, worded in Russian
    form.get_by_label(RU["f_representative_phone"]).fill("+7 916 555-12-34")
    _submit(b24, "admit", RU["a_admit"])
    expect(b24.locator(".cbp-balance")).to_have_text("20 000,00 ₽")
    expect(b24.locator(".cbp-paid-through")).to_have_text(
        "05.12.2026"
    )  # 20 000 / 3 500 = 5 full days from 1 Dec

    b24.locator('[data-action="deposit"]').click()
    b24.get_by_label(RU["f_amount"]).fill("1 000,00")
    _submit(b24, "deposit", RU["a_deposit"])
    expect(b24.locator(".cbp-balance")).to_have_text("21 000,00 ₽")

    b24.locator('[data-action="charge"]').click()
    b24.get_by_label(RU["f_amount"]).fill("700")
    b24.get_by_label(RU["f_article"]).select_option(label="Процедуры")
    _submit(b24, "charge", RU["a_charge"])
    expect(b24.locator(".cbp-balance")).to_have_text("20 300,00 ₽")

    b24.locator('[data-action="purchase"]').click()  # above the demo's 5 000 ₽ threshold: a hold
    b24.get_by_label(RU["f_description"]).fill("Кресло-коляска")
    b24.get_by_label(RU["f_amount"]).fill("6000")
    _submit(b24, "purchase", RU["a_purchase"])
    expect(b24.locator(".cbp-pending .cbp-item")).to_have_count(1)
    b24.locator(".cbp-pending").get_by_role("button", name=RU["a_approve"]).click()
    expect(b24.get_by_label(RU["f_given_by"])).to_have_value("Ирина Белова (жена)")
    b24.get_by_label(RU["f_channel"]).select_option("in_person")
    _submit(b24, "approve", RU["a_approve"])
    expect(b24.locator(".cbp-balance")).to_have_text("14 300,00 ₽")

    b24.locator('.cbp-entries .cbp-item[data-kind="charge"]').get_by_role("button").click()
    b24.get_by_label(RU["f_reason"]).fill("Процедура не проводилась")
    _submit(b24, "reversal", RU["a_reverse"])
    expect(b24.locator(".cbp-balance")).to_have_text("15 000,00 ₽")

    b24.locator('[data-action="discharge"]').click()
    b24.get_by_label(RU["f_refund_method"]).select_option("transfer")
    _submit(b24, "discharge", RU["a_discharge"])
    expect(b24.locator(".cbp-badge")).to_have_text(RU["status_closed"])
    expect(b24.locator(".cbp-balance")).to_have_text("0,00 ₽")

    with rt.db.transaction() as s:
        account = s.scalars(
            select(StayAccount).where(
                StayAccount.portal_id == demo["portal_id"], StayAccount.deal_id == demo["new_deal"]
            )
        ).one()
        kinds = sorted(s.scalars(select(LedgerEntry.kind).where(LedgerEntry.account_id == account.id)))
        purchase = s.scalars(select(PurchaseRequest).where(PurchaseRequest.account_id == account.id)).one()
        refund = s.scalars(
            select(LedgerEntry).where(LedgerEntry.account_id == account.id, LedgerEntry.kind == "refund")
        ).one()
    assert account.status == "closed"
    assert kinds == ["charge", "deposit", "deposit", "purchase", "refund", "reversal"]
    assert (purchase.status, purchase.consent_channel) == ("approved", "in_person")
    assert (refund.amount_minor, refund.method) == (1_500_000, "transfer")

    frame = page.frame(name=None, url=lambda url: "bitrix24.html" in url)
    assert frame is not None and frame.evaluate("window.__bx24Calls[0]") == "init"
    assert "fitWindow" in frame.evaluate("window.__bx24Calls")

    # The amoCRM shell on the same page, reopened, shows the same closed account.
    page.locator("#open").click()
    amo = page.frame_locator("#amo")
    expect(amo.locator(".cbp-badge")).to_have_text(RU["status_closed"])
    expect(amo.locator(".cbp-balance")).to_have_text("0,00 ₽")
    assert errors == []
    page.context.close()


def test_both_shells_show_an_in_stay_patient_in_english(browser, live, demo):
    page, errors = _open(browser, live, demo, demo["in_stay"], lang="en")
    for frame in ("#amo", "#b24"):
        shell = page.frame_locator(frame)
        expect(shell.locator(".cbp-balance")).to_be_visible()
        expect(shell.get_by_role("tab", name=EN["tab_statement"])).to_be_visible()
    assert errors == []
    page.context.close()


def test_settings_screen_saves_a_full_mapping_and_names_a_refused_setting(browser, live, demo, rt):
    page, errors = _open(browser, live, demo, demo["in_stay"])
    screen = page.frame_locator("#settings")
    form = screen.locator('form[data-form="settings"]')
    expect(form).to_be_visible()
    assert "null" not in screen.locator(".cbp").inner_text()
    # Pickers hold the sandbox CRM's real ids, not free text.
    stage = form.get_by_label(RU["s_stage_discharge"])
    assert "inpatient|won" in stage.locator("option").evaluate_all("os => os.map(o => o.value)")
    form.get_by_label(RU["s_timezone"]).select_option("Asia/Novosibirsk")
    form.get_by_label(RU["s_overdraft"]).fill("2 500,00")
    form.get_by_label(RU["s_field_balance"]).select_option("balance")
    form.get_by_label(RU["s_stage_admission"]).select_option("inpatient|admission")
    stage.select_option("inpatient|won")
    form.get_by_label(RU["s_pipeline_ledger"]).select_option("inpatient")
    form.get_by_label("Игорь Петров").select_option("finance")
    form.get_by_label("Олег Сидоров").select_option("")
    form.get_by_role("button", name=RU["s_save"]).click()
    expect(screen.locator(".cbp-toast")).to_have_text(RU["s_saved"].replace("{version}", "1"))
    expect(screen.locator(".cbp-history")).to_contain_text("timezone")

    with rt.db.transaction() as s:
        portal = s.get(Portal, demo["portal_id"])
        users = {
            u.name: u.roles for u in s.scalars(select(PortalUser).where(PortalUser.portal_id == portal.id))
        }
        assert portal.timezone == "Asia/Novosibirsk"
        assert portal.settings["ledger"]["overdraft_minor"] == 250_000
        assert portal.settings["stages"]["discharge"] == {"pipeline_id": "inpatient", "stage_id": "won"}
        assert portal.settings["pipelines"]["ledger"] == "inpatient"
        assert (users["Игорь Петров"], users["Олег Сидоров"]) == (["finance"], [])
        assert s.scalar(select(func.count()).select_from(PortalSettingsVersion)) == 1

    # The demo's stays are kept in RUB: the server refuses another currency, beside that setting.
    form = screen.locator('form[data-form="settings"]')
    form.get_by_label(RU["s_currency"]).select_option("USD")
    form.get_by_role("button", name=RU["s_save"]).click()
    expect(form.locator('.cbp-field-error[data-field="currency"]')).to_contain_text("валюту сменить нельзя")
    with rt.db.transaction() as s:
        assert s.get(Portal, demo["portal_id"]).currency == "RUB"
        assert s.scalar(select(func.count()).select_from(PortalSettingsVersion)) == 1
    assert errors == []
    page.context.close()


def test_log_shows_a_failed_mirror_job_and_retries_it(browser, live, demo, rt):
    with rt.db.transaction() as s:
        job = OutboxJob(
            portal_id=demo["portal_id"],
            operation="deal.fields",
            deal_id=demo["in_stay"],
            payload={},
            idempotency_key="panel-test-failed",
            state="failed",
            attempts=12,
            last_error="400 Bad Request: field 'balance' is not a number",
        )
        s.add(job)
        s.flush()
        job_id = job.id
    page, errors = _open(browser, live, demo, demo["in_stay"])
    screen = page.frame_locator("#settings")
    screen.get_by_role("tab", name=RU["tab_log"]).click()
    item = screen.locator(f'[data-outbox="{job_id}"]')
    expect(item).to_contain_text("field 'balance' is not a number")
    item.get_by_role("button", name=RU["log_retry"]).click()
    expect(screen.locator(".cbp-toast")).to_have_text(RU["log_retried"])
    expect(item).to_have_count(0)
    with rt.db.transaction() as s:
        assert s.get(OutboxJob, job_id).state in {"pending", "done"}
    assert errors == []
    page.context.close()
