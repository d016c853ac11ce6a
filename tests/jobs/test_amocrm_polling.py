"""Where an account refuses webhooks, a poll by `updated_at` brings people's changes in through the inbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from sqlalchemy import func, select

from tests.support.fake_amocrm import FakeAmo
from widget_server.amocrm_install import complete_install
from widget_server.clock import local_today
from widget_server.jobs.amocrm import poll_amo_changes
from widget_server.models import InboxEvent, Portal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "amocrm"
TOKEN = json.loads((FIXTURES / "oauth/token__ok.json").read_text())
BALANCE = "1002"


@pytest.fixture
def refused(rt, monkeypatch, make_api):  # type: ignore[no-untyped-def]
    # Real time throughout: the fake stamps `updated_at` with it, and the poll's first look-back uses it.
    monkeypatch.setattr(
        rt,
        "settings",
        rt.settings.with_overrides(amo_client_id="client-id", amo_client_secret="client-secret-0123456789"),
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post("https://clinic.amocrm.ru/oauth2/access_token", json=TOKEN)
        # The account refuses webhook subscriptions (plan or rights): the install records it.
        forbidden = {"title": "Forbidden", "status": 403}
        rsps.post("https://clinic.amocrm.ru/api/v4/webhooks", status=403, json=forbidden)
        fake = FakeAmo(rsps, token=TOKEN["access_token"], rate_limit=None)
        installed = complete_install(rt, "clinic.amocrm.ru", "auth-code")
        with rt.db.transaction() as session:
            portal = session.get(Portal, installed.portal_id)
            assert portal.settings["amocrm"]["webhooks"]["status"] == "refused"
            portal.settings = {**portal.settings, "deal_fields": {"balance": BALANCE}}
        with rt.db.transaction() as session:
            portal = session.get(Portal, installed.portal_id)
        admin = make_api(portal, "admin")
        tariff = admin.post("/api/v1/tariffs", json={"name": "Стандарт", "daily_rate": "3500.00"}).get_json()
        pipeline = fake.pipelines[0]
        lead = fake.new_lead("Петров П. П.", pipeline["id"], pipeline["_embedded"]["statuses"][1]["id"])
        admit = admin.post(f"/api/v1/deals/{lead['id']}/stay", json={
            "admission_date": local_today("Europe/Moscow").isoformat(), "tariff_id": tariff["id"],
            "deposit": {"amount": "35000.00", "method": "card"}})  # fmt: skip
        assert admit.status_code == 201
        yield fake, rsps, portal, lead


def _field(lead, field_id):  # type: ignore[no-untyped-def]
    values = {str(i["field_id"]): i["values"][0]["value"] for i in lead.get("custom_fields_values") or []}
    return values.get(field_id)


def _inbox(rt) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        return [(e.source, e.outcome) for e in session.scalars(select(InboxEvent).order_by(InboxEvent.id))]


def test_polling_restores_a_hand_edited_balance_and_skips_our_own_write(refused, rt, jobs):
    fake, _rsps, _portal, lead = refused
    jobs()  # our field write reaches amo
    ours = _field(fake.leads[lead["id"]], BALANCE)

    poll_amo_changes()
    jobs()
    assert _inbox(rt) == [("amocrm_poll", "own_write")]  # the only change so far is our own write

    stored = fake.leads[lead["id"]]
    stored["custom_fields_values"] = [
        {**i, "values": [{"value": "1"}]} if str(i["field_id"]) == BALANCE else i
        for i in stored["custom_fields_values"]
    ]
    stored["updated_at"] += 30
    poll_amo_changes()
    jobs()

    assert _inbox(rt)[1] == ("amocrm_poll", "handled")
    assert _field(fake.leads[lead["id"]], BALANCE) == ours


def test_a_second_poll_stores_nothing_new_and_asks_only_from_the_watermark(refused, rt, jobs):
    fake, rsps, portal, lead = refused
    jobs()
    poll_amo_changes()
    poll_amo_changes()
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent)) == 1
        watermark = session.get(Portal, portal.id).settings["amocrm"]["poll_watermark"]
    assert watermark == fake.leads[lead["id"]]["updated_at"]
    lists = [c.request.url for c in rsps.calls if "/api/v4/leads?" in c.request.url]
    assert f"filter%5Bupdated_at%5D%5Bfrom%5D={watermark - 120}" in lists[-1]


def test_portals_with_webhooks_are_not_polled(refused, rt):
    _fake, rsps, portal, _lead = refused
    with rt.db.transaction() as session:
        row = session.get(Portal, portal.id)
        amocrm = {**row.settings["amocrm"], "webhooks": {"status": "subscribed"}}
        row.settings = {**row.settings, "amocrm": amocrm}
    before = len(rsps.calls)
    assert poll_amo_changes().startswith("polled 0 portals")
    assert len(rsps.calls) == before
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent)) == 0
