"""The amo shell's transport over the real jQuery 3 (Debian's libjs-jquery), as amo's `$authorizedAjax`
is jQuery.ajax with the token header: JSON posts, a 422's field errors, a blob download, an outage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from widget_server.models import LedgerEntry

from .conftest import FINANCE, HAVE_CHROMIUM, JQUERY, RU

if not HAVE_CHROMIUM or not (JQUERY.exists() or os.environ.get("CI")):
    pytest.skip(
        "Debian chromium / libjs-jquery missing (scripts/test.sh installs them)", allow_module_level=True
    )

from playwright.sync_api import expect


def test_real_jquery_transport_posts_refuses_downloads_and_recovers(open_card, live, rt):
    page = open_card(FINANCE, jquery=True)
    assert page.evaluate("window.jQuery.fn.jquery").startswith("3.")
    expect(page.locator(".cbp-balance")).to_have_text("35 000,00 ₽")

    page.locator('.cbp-action[data-action="charge"]').click()
    form = page.locator('form[data-form="charge"]')
    form.get_by_label(RU["f_amount"]).fill("90000")
    form.get_by_label(RU["f_article"]).select_option(label="Лекарства")
    form.get_by_role("button", name=RU["a_charge"]).click()
    expect(form.locator('.cbp-field-error[data-field="amount"]')).to_have_text(RU["e_insufficient_funds"])
    form.get_by_label(RU["f_amount"]).fill("1000")
    form.get_by_role("button", name=RU["a_charge"]).dblclick()
    expect(page.locator(".cbp-balance")).to_have_text("34 000,00 ₽")
    with rt.db.transaction() as s:
        assert (
            s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "charge")) == 1
        )

    page.get_by_role("tab", name=RU["tab_statement"]).click()
    with page.expect_download() as info:
        page.get_by_role("button", name=RU["download_pdf"]).click()
    assert Path(info.value.path()).read_bytes().startswith(b"%PDF")

    def refuse(route):  # type: ignore[no-untyped-def]
        route.abort("connectionrefused")

    page.route("**/api/v1/deals/501/stay/statement**", refuse)
    page.get_by_label(RU["f_kind"]).select_option("charge")
    expect(page.locator(".cbp-statement .cbp-error")).to_have_text(RU["error_network"])
    page.unroute("**/api/v1/deals/501/stay/statement**", refuse)
    page.locator(".cbp-statement").get_by_role("button", name=RU["retry"]).click()
    expect(page.locator(".cbp-table tbody tr")).to_have_count(1)
    assert page.evaluate("window.__stubErrors") == []
