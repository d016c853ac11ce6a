"""The «Стационар» section in the amoCRM shell at a phone's width, headless Chromium: a nurse at the
bedside sees the dose due now and marks it given with one tap on a large target; the record is written
once with her as the actor. Finance opens the same tab and gets no rounds (the server refuses them)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from widget_server.models import PortalUser, RoundRecord

from .conftest import FINANCE, HAVE_CHROMIUM, RU, plain

if not HAVE_CHROMIUM:
    pytest.skip("Debian chromium missing (scripts/test.sh installs it)", allow_module_level=True)

from playwright.sync_api import expect

NURSE, DOCTOR = 7010, 7011


@pytest.fixture
def ward(live, rt):  # type: ignore[no-untyped-def]
    """Deal 501 (admitted on the ledger at 1 Dec) placed in «Корпус 1», ward 12, bed 2, with a dose at
    10:00 — the live clock's time."""
    with rt.db.transaction() as s:
        s.add_all(
            [
                PortalUser(portal_id=live.portal_id, crm_user_id=str(NURSE), name="Мария", roles=["nurse"]),
                PortalUser(portal_id=live.portal_id, crm_user_id=str(DOCTOR), name="Игорь", roles=["doctor"]),
            ]
        )
    building = live.api("POST", "/api/v1/buildings", {
        "name": "Корпус 1", "pipeline_id": "1001", "admission_stage_id": "2001", "won_stage_id": "142",
        "manager_user_id": "7005", "profiles": ["neurology"],
        "wards": [{"name": "12", "beds": 2}]})  # fmt: skip
    live.api("POST", "/api/v1/deals/501/stay/admission", {
        "building": building["id"], "ward": building["wards"][0]["id"], "bed": 2,
        "representative": {"name": "Петрова Ольга", "relation": "дочь"}})  # fmt: skip
    live.api("POST", "/api/v1/deals/501/stay/prescriptions", {
        "drug": "Мексидол", "dose": "125 мг", "times": ["10:00"], "start_date": "2026-12-01",
        "doctor_user_id": str(DOCTOR)})  # fmt: skip
    return building


def _open_tab(page):  # type: ignore[no-untyped-def]
    page.locator('.cbp-tab[data-section="inpatient"]').click()
    expect(page.locator(".cbp-ip-stay")).to_be_visible()


def test_a_nurse_marks_a_dose_given_with_one_tap_at_320_px(open_card, live, rt, ward):
    page = open_card(NURSE, width=320)
    _open_tab(page)
    assert "Корпус 1" in plain(page.locator(".cbp-ip-stay").inner_text())
    dose = page.locator(".cbp-ip-dose")
    expect(dose).to_have_count(1)
    assert "Мексидол" in plain(dose.inner_text())
    given = dose.locator('[data-action="given"]')
    box = given.bounding_box()
    assert box is not None and box["height"] >= 44 and box["width"] >= 44  # a finger, not a mouse pointer
    assert page.evaluate("document.documentElement.scrollWidth") <= 320

    given.click()
    expect(page.locator(".cbp-ip-due")).to_contain_text(RU["ip_nothing_due"])
    expect(page.locator(".cbp-toast")).to_contain_text("Мексидол")
    with rt.db.transaction() as s:
        records = s.execute(select(RoundRecord.outcome, RoundRecord.actor, RoundRecord.corrects_id)).all()
    assert [tuple(r) for r in records] == [("given", f"user:{NURSE}", None)]
    assert live.posts.count(live.posts[-1]) == 1  # one tap, one request


def test_not_given_offers_the_reasons_and_their_next_steps(open_card, live, rt, ward):
    page = open_card(NURSE, width=320)
    _open_tab(page)
    page.locator('.cbp-ip-dose [data-action="not-given"]').click()
    reason = page.locator('.cbp-ip-reasons [data-reason="out_of_stock"]')
    expect(reason).to_contain_text("Купить препарат")
    reason.click()
    expect(page.locator(".cbp-ip-due")).to_contain_text(RU["ip_nothing_due"])
    with rt.db.transaction() as s:
        assert s.execute(select(RoundRecord.outcome, RoundRecord.reason)).all() == [
            ("not_given", "out_of_stock")
        ]


def test_finance_sees_the_stay_but_no_rounds(open_card, ward):
    page = open_card(FINANCE, width=320)
    _open_tab(page)
    expect(page.locator(".cbp-ip-due")).to_have_count(0)
    expect(page.locator(".cbp-ip-prescriptions")).to_have_count(0)


def test_before_admission_the_tab_shows_free_beds_at_320_px(open_card, live):
    live.api("POST", "/api/v1/buildings", {
        "name": "Корпус 2", "pipeline_id": "1002", "admission_stage_id": "2002", "won_stage_id": "142",
        "manager_user_id": "7005", "wards": [{"name": "1", "beds": 3}]})  # fmt: skip
    page = open_card(FINANCE, width=320)
    page.locator('.cbp-tab[data-section="inpatient"]').click()
    expect(page.locator(".cbp-ip-occupancy")).to_contain_text("Корпус 2")
    expect(page.locator(".cbp-ip-occupancy")).to_contain_text(RU["ip_free_of"].format(free=3, beds=3))
    expect(page.locator(".cbp-ip-day")).to_have_count(7)
    expect(page.locator('[data-action="ip-admit"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
