"""Which screen a deal without a stay account opens on, at a phone's width in headless Chromium: a deal in a
building's pipeline opens on «Стационар» by itself, a deal in another stage keeps the ledger's screen (with
the tab still offered). And the arrival given for a deal not yet admitted changes from the panel: its
values filled in, a date the API refuses shown beside its field with nothing written, then saved.

The CRM's answer for the deal's stage is the stub below (the live app runs in this process)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from connectors.types import Deal, StageRef
from widget_server.models import ExpectedArrival

from .conftest import HAVE_CHROMIUM, RU, STAFF, plain

if not HAVE_CHROMIUM:
    pytest.skip("Debian chromium missing (scripts/test.sh installs it)", allow_module_level=True)

from playwright.sync_api import expect

IN_BUILDING, TALKS, ARRIVING = 881, 882, 883
STAGES = {IN_BUILDING: StageRef("1001", "2001"), TALKS: StageRef("10", "11"), ARRIVING: StageRef("10", "11")}


class StubCrm:
    def get_deal(self, deal_id: str) -> Deal:
        return Deal(id=deal_id, name="Пациент", stage=STAGES[int(deal_id)])


@pytest.fixture
def hospital(live, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr("widget_server.http.api_inpatient.crm_for", lambda portal, rt: StubCrm())
    return live.api("POST", "/api/v1/buildings", {
        "name": "Корпус 1", "pipeline_id": "1001", "admission_stage_id": "2001", "won_stage_id": "142",
        "manager_user_id": "7005", "profiles": ["neurology"],
        "wards": [{"name": "12", "beds": 2}]})  # fmt: skip


def _fits(page) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate("document.documentElement.scrollWidth") <= 320


def test_a_deal_in_a_building_pipeline_opens_on_the_inpatient_tab(open_card, live, hospital):
    page = open_card(STAFF, deal_id=IN_BUILDING, width=320)
    expect(page.locator('#cbp-view[data-section="inpatient"]')).to_be_visible()
    expect(page.locator('form[data-form="ip-arrival"]')).to_contain_text(RU["ip_arrival_intro"])
    expect(page.locator(".cbp-notice")).to_have_count(0)
    # The ledger's «open the account» stays one line above, and lands on the account's own tab.
    entry = page.locator(".cbp-ledger-entry")
    expect(entry).to_contain_text(RU["no_stay"])
    _fits(page)
    entry.locator('[data-action="admit"]').click()
    expect(entry.locator('form[data-form="admit"]')).to_be_visible()
    _fits(page)


def test_another_deal_keeps_the_ledger_screen(open_card, live, hospital):
    page = open_card(STAFF, deal_id=TALKS, width=320)
    expect(page.locator(".cbp-notice")).to_contain_text(RU["no_stay"])
    expect(page.locator('[data-action="admit"]')).to_be_visible()
    expect(page.locator('[data-action="inpatient"]')).to_be_visible()  # still one tap away
    expect(page.locator('form[data-form="ip-arrival"]')).to_have_count(0)
    _fits(page)


def test_the_arrival_changes_from_the_panel_until_admission(open_card, live, rt, hospital):
    with rt.db.transaction() as s:
        s.add(ExpectedArrival(portal_id=live.portal_id, deal_id=str(ARRIVING), arrival_date=date(2026, 12, 2),
                              budget_minor=10_000_000, profile="neurology", building_id=hospital["id"],
                              created_by="test"))  # fmt: skip
    page = open_card(STAFF, deal_id=ARRIVING, width=320)
    card = page.locator(".cbp-ip-arrival")
    expect(card).to_contain_text("02.12.2026")
    card.locator('[data-action="ip-arrival-change"]').click()

    form = page.locator('form[data-form="ip-arrival"]')
    expect(form).to_contain_text(RU["ip_arrival_change_title"])
    assert form.locator('input[name="arrival_date"]').input_value() == "2026-12-02"
    assert form.locator('input[name="budget"]').input_value() == "100000.00"
    assert form.locator('select[name="profile"]').input_value() == "neurology"
    _fits(page)

    # A date in the past: the API's 422 names arrival_date, shown beside it; nothing is written.
    form.locator('input[name="arrival_date"]').fill("2026-11-01")
    form.locator('button[type="submit"]').click()
    expect(form.locator('.cbp-field-error[data-field="arrival_date"]')).not_to_be_empty()
    with rt.db.transaction() as s:
        row = s.scalar(select(ExpectedArrival))
        assert (row.arrival_date, row.budget_minor) == (date(2026, 12, 2), 10_000_000)

    form.locator('input[name="arrival_date"]').fill("2026-12-05")
    form.locator('input[name="budget"]').fill("150 000,00")
    form.locator('button[type="submit"]').click()
    card = page.locator(".cbp-ip-arrival")
    expect(card).to_contain_text("05.12.2026")
    assert "150 000,00" in plain(card.inner_text())
    with rt.db.transaction() as s:
        row = s.scalar(select(ExpectedArrival))
        assert (row.arrival_date, row.budget_minor) == (date(2026, 12, 5), 15_000_000)
    _fits(page)
