"""The Digital Pipeline action's form: the widget fills amo's hidden setting with the portal's DP secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import ADMIN, FINANCE, HAVE_CHROMIUM

if not HAVE_CHROMIUM:
    pytest.skip("Debian chromium missing (scripts/test.sh installs it)", allow_module_level=True)

from playwright.sync_api import expect

I18N = Path(__file__).resolve().parents[2] / "static" / "widget" / "amocrm" / "i18n"
TEXTS = json.loads((I18N / "ru.json").read_text())["panel"]

# amo renders the manifest's dp.settings as a form in a modal; the row markup is amo's settings markup.
DP_FORM = """
const form = document.createElement('form');
form.className = 'digital-pipeline__edit-form';
form.innerHTML = '<div class="widget_settings_block__item_field">'
  + '<input type="text" name="dp_action" value="distribute"></div>'
  + '<div class="widget_settings_block__item_field">'
  + '<input type="text" name="clinicbridge_secret" value=""></div>';
document.body.appendChild(form);
window.__changes = 0;
form.querySelector('[name="clinicbridge_secret"]').addEventListener('change', () => window.__changes++);
"""


def _open_dp_form(open_card, user: int):  # type: ignore[no-untyped-def]
    page = open_card(user)
    page.evaluate(DP_FORM)
    assert page.evaluate("window.__widget.callbacks.dpSettings()") is True
    return page


def test_an_admin_opening_the_action_form_gets_the_secret_filled_in_and_hidden(open_card, live):
    page = _open_dp_form(open_card, ADMIN)
    secret = live.api("GET", "/api/v1/amocrm/dp-settings")["secret"]
    secret_input = page.locator('input[name="clinicbridge_secret"]')
    expect(secret_input).to_have_value(secret)
    expect(secret_input).to_be_hidden()  # people never see or type it
    expect(page.locator('input[name="dp_action"]')).to_be_visible()
    expect(page.locator(".cb-dp-note")).to_have_text(TEXTS["dp_secret_filled"])
    assert page.evaluate("window.__changes") == 1  # amo's form notices the new value and saves it


def test_a_user_who_is_not_admin_is_told_why_and_nothing_is_filled(open_card, live):
    page = _open_dp_form(open_card, FINANCE)
    expect(page.locator(".cb-dp-note")).to_have_text(TEXTS["dp_secret_failed"])
    assert page.locator('input[name="clinicbridge_secret"]').input_value() == ""
