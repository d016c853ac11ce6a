"""«Стационар» for a deal with no stay account yet, at a phone's width in headless Chromium: a deal asked
for its arrival opens on the tab by itself (any other deal offers it beside «open the account»); the tab
asks for the arrival (date, budget, profile → its building), then admits the patient (building, ward,
bed, tariff, representative), which opens the account; the panel comes back with its tabs on the stay."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from widget_server.models import ArrivalRequest, ExpectedArrival, InpatientStay, StayAccount

from .conftest import HAVE_CHROMIUM, RU, STAFF, plain

if not HAVE_CHROMIUM:
    pytest.skip("Debian chromium missing (scripts/test.sh installs it)", allow_module_level=True)

from playwright.sync_api import expect

DEAL = 777


@pytest.fixture
def hospital(live):  # type: ignore[no-untyped-def]
    live.api("POST", "/api/v1/buildings", {
        "name": "Корпус 2", "pipeline_id": "1002", "admission_stage_id": "2002", "won_stage_id": "142",
        "manager_user_id": "7005", "profiles": ["cardiology"],
        "wards": [{"name": "3", "beds": 1}]})  # fmt: skip
    return live.api("POST", "/api/v1/buildings", {
        "name": "Корпус 1", "pipeline_id": "1001", "admission_stage_id": "2001", "won_stage_id": "142",
        "manager_user_id": "7005", "profiles": ["neurology", "low_vision"],
        "wards": [{"name": "12", "beds": 2}, {"name": "14", "beds": 1}]})  # fmt: skip


def _fits(page) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate("document.documentElement.scrollWidth") <= 320


def test_arrival_then_admission_then_the_stay_at_320_px(open_card, live, rt, hospital):
    with rt.db.transaction() as s:  # the deal entered the CRM's «ready to sign» stage
        s.add(ArrivalRequest(portal_id=live.portal_id, deal_id=str(DEAL), pipeline_id="10", stage_id="14"))
    page = open_card(STAFF, deal_id=DEAL, width=320)
    # Asked for its arrival: the card opens on «Стационар», not on the ledger's empty screen.
    form = page.locator('form[data-form="ip-arrival"]')
    expect(form).to_contain_text(RU["ip_arrival_asked"])
    expect(page.locator('#cbp-view[data-section="inpatient"]')).to_be_visible()
    expect(page.locator(".cbp-notice")).to_have_count(0)  # the ledger's empty screen is not the card
    _fits(page)
    form.locator('input[name="arrival_date"]').fill("2026-12-02")
    form.locator('input[name="budget"]').fill("150 000,00")
    form.locator('select[name="profile"]').select_option("neurology")
    expect(form.locator(".cbp-ip-suggestion")).to_have_text(
        RU["ip_building_suggested"].format(building="Корпус 1")
    )
    form.locator('button[type="submit"]').click()

    card = page.locator(".cbp-ip-arrival")
    expect(card).to_contain_text("02.12.2026")
    assert "150 000,00" in plain(card.inner_text()) and "Корпус 1" in plain(card.inner_text())
    with rt.db.transaction() as s:
        arrival = s.scalar(select(ExpectedArrival))
        assert (arrival.deal_id, arrival.budget_minor, arrival.building_id) == (
            str(DEAL),
            15_000_000,
            hospital["id"],
        )

    page.locator('[data-action="ip-admit"]').click()
    admit = page.locator('form[data-form="ip-admit"]')
    expect(admit).to_be_visible()
    _fits(page)
    # The arrival's building comes first and its first ward is chosen.
    assert (
        admit.locator('select[name="ward"]').input_value() == f"{hospital['id']}:{hospital['wards'][0]['id']}"
    )
    admit.locator('input[name="bed"]').fill("2")
    admit.locator('select[name="tariff"]').select_option(str(live.ids["tariff"]))
    admit.locator('input[name="representative.name"]').fill("Петрова Ольга")
    admit.locator('input[name="representative.relation"]').fill("дочь")
    admit.locator('input[name="representative.phone"]').fill("8 (916) 123-45-67")
    admit.locator('button[type="submit"]').click()

    # The account is open now: the panel has its tabs, on «Стационар», showing the stay.
    stay = page.locator(".cbp-ip-stay")
    expect(stay).to_be_visible()
    expect(page.locator('.cbp-tab[data-section="inpatient"]')).to_have_attribute("aria-selected", "true")
    assert "Корпус 1" in plain(stay.inner_text()) and "Петрова Ольга" in plain(stay.inner_text())
    expect(page.locator('[data-action="discharge-request"]')).to_be_visible()
    _fits(page)
    with rt.db.transaction() as s:
        placed = s.scalar(select(InpatientStay))
        account = s.scalar(select(StayAccount).where(StayAccount.deal_id == str(DEAL)))
        assert (placed.ward_id, placed.bed, placed.representative_phone) == (
            hospital["wards"][0]["id"], 2, "+79161234567")  # fmt: skip
        assert (account.status, account.representative_name) == ("open", "Петрова Ольга")


def test_a_wrong_budget_is_shown_beside_its_field_and_nothing_is_saved(open_card, live, rt, hospital):
    page = open_card(STAFF, deal_id=DEAL, width=320)
    page.locator('[data-action="inpatient"]').click()
    form = page.locator('form[data-form="ip-arrival"]')
    form.locator('input[name="arrival_date"]').fill("2026-12-02")
    form.locator('input[name="budget"]').fill("сто тысяч")
    form.locator('button[type="submit"]').click()
    expect(form.locator('.cbp-field-error[data-field="budget"]')).to_have_text(RU["v_amount"])
    assert live.posts == []
    with rt.db.transaction() as s:
        assert s.scalar(select(ExpectedArrival)) is None
