"""Admins see at the top of the panel what needs them, with the reconnect button; others see nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from widget_server.models import Portal

from .conftest import ADMIN, FINANCE, HAVE_CHROMIUM

if not HAVE_CHROMIUM:
    pytest.skip("Debian chromium missing (scripts/test.sh installs it)", allow_module_level=True)

from playwright.sync_api import expect

RU = json.loads((Path(__file__).resolve().parents[2] / "static/widget/common/i18n/ru.json").read_text())


@pytest.fixture
def lost_access(live, rt):  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        portal = session.get(Portal, live.portal_id)
        portal.status = "needs_reauth"
        portal.settings = {**(portal.settings or {}), "reauth_reason": "Token has been revoked"}


def test_an_admin_sees_lost_access_and_the_reconnect_button(open_card, live, lost_access):
    page = open_card(ADMIN)
    banner = page.locator(".cbp-attention")
    expect(banner).to_be_visible()
    expect(banner.locator('[data-code="needs_reauth"]')).to_contain_text("переподключите интеграцию")
    reconnect = banner.get_by_role("link", name=RU["reconnect"])
    assert reconnect.get_attribute("href").endswith("/install/amocrm")
    expect(page.locator(".cbp-main")).to_be_visible()  # the ledger still works from our own books


def test_a_finance_user_is_not_shown_what_only_an_admin_can_fix(open_card, live, lost_access):
    page = open_card(FINANCE)
    expect(page.locator(".cbp-balance")).to_be_visible()
    expect(page.locator(".cbp-attention")).to_be_hidden()


def test_a_healthy_portal_shows_no_banner(open_card, live):
    page = open_card(ADMIN)
    expect(page.locator(".cbp-tab").first).to_be_visible()
    expect(page.locator(".cbp-attention")).to_be_hidden()
