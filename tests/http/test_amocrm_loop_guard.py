"""Our own writes' echoes do nothing; a person's edit of our ledger fields on the deal is put right.

End to end over the stateful amo fake: the ledger mirrors balance and paid-through date into the lead,
amo's update hook reports that write back, and later a person types another balance into the card.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
import responses
from sqlalchemy import select

from tests.support.fake_amocrm import FakeAmo
from widget_server.amocrm_hooks import install_webhook_secret
from widget_server.amocrm_install import complete_install
from widget_server.models import InboxEvent, OutboxJob, Portal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "amocrm"
TOKEN = json.loads((FIXTURES / "oauth/token__ok.json").read_text())
BALANCE, RATE = "1002", "1004"  # a numeric and a date field of the fake account


@pytest.fixture
def amo(rt, monkeypatch, make_api, frozen_today):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(
        rt,
        "settings",
        rt.settings.with_overrides(amo_client_id="client-id", amo_client_secret="client-secret-0123456789"),
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post("https://clinic.amocrm.ru/oauth2/access_token", json=TOKEN)
        # The per-second ceiling is the limiter's business (tested elsewhere), not this test's.
        fake = FakeAmo(rsps, token=TOKEN["access_token"], rate_limit=None)
        installed = complete_install(rt, "clinic.amocrm.ru", "auth-code")
        with rt.db.transaction() as session:
            portal = session.get(Portal, installed.portal_id)
            secret = install_webhook_secret(portal)
            portal.settings = {
                **portal.settings,
                "deal_fields": {"balance": BALANCE, "paid_through": RATE},
                "ledger": {"purchase_threshold_minor": 500_000, "overdraft_minor": 0},
            }
        with rt.db.transaction() as session:
            portal = session.get(Portal, installed.portal_id)
        admin = make_api(portal, "admin")
        tariff = admin.post("/api/v1/tariffs", json={"name": "Стандарт", "daily_rate": "3500.00"}).get_json()
        pipeline = fake.pipelines[0]
        lead = fake.new_lead("Петров П. П.", pipeline["id"], pipeline["_embedded"]["statuses"][1]["id"])
        response = admin.post(f"/api/v1/deals/{lead['id']}/stay", json={
            "admission_date": "2026-12-01", "tariff_id": tariff["id"],
            "deposit": {"amount": "35000.00", "method": "card"}})  # fmt: skip
        assert response.status_code == 201, response.get_json()
        yield fake, rsps, portal, secret, lead


@pytest.fixture
def frozen_today(monkeypatch):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from widget_server import clock

    monkeypatch.setattr(clock, "now_utc", lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))


def _field(lead: dict, field_id: str):  # type: ignore[no-untyped-def,type-arg]
    for item in lead.get("custom_fields_values") or []:
        if str(item["field_id"]) == field_id:
            return item["values"][0]["value"]
    return None


def _update_hook(lead: dict, values: dict[str, str]) -> bytes:  # type: ignore[type-arg]
    """amo's `leads[update]` account webhook (research/amocrm.md §4.2), as the fixture has it."""
    form = {
        "leads[update][0][id]": str(lead["id"]),
        "leads[update][0][name]": lead["name"],
        "leads[update][0][status_id]": str(lead["status_id"]),
        "leads[update][0][pipeline_id]": str(lead["pipeline_id"]),
        "leads[update][0][responsible_user_id]": str(lead["responsible_user_id"]),
        "leads[update][0][last_modified]": str(lead["updated_at"]),
        "leads[update][0][updated_at]": str(lead["updated_at"]),
        "leads[update][0][account_id]": "29876543",
        "account[subdomain]": "clinic",
        "account[id]": "29876543",
    }
    for i, (field_id, value) in enumerate(values.items()):
        form[f"leads[update][0][custom_fields][{i}][id]"] = field_id
        form[f"leads[update][0][custom_fields][{i}][values][0][value]"] = value
    return urlencode(form).encode()


def _post(client, portal: Portal, secret: str, body: bytes):  # type: ignore[no-untyped-def]
    response = client.post(
        f"/hooks/amocrm/{portal.slug}/{secret}", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200, response.get_json()


def _lead_reads(rsps: responses.RequestsMock, lead_id: int) -> int:
    path = f"/api/v4/leads/{lead_id}"
    calls = [call.request for call in rsps.calls]
    return sum(1 for r in calls if r.method == "GET" and r.url.split("?")[0].endswith(path))


def _last_outcome(rt) -> str:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        return session.scalars(select(InboxEvent.outcome).order_by(InboxEvent.id.desc())).first()


def _syncs(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        return len(session.scalars(select(OutboxJob).where(OutboxJob.operation == "sync_stay_fields")).all())


def test_the_echo_of_our_field_write_is_recognised_and_does_nothing(amo, client, jobs, rt):
    fake, rsps, portal, secret, lead = amo
    jobs()  # the admission's note and field sync reach amo
    mirrored = fake.leads[lead["id"]]
    assert _field(mirrored, BALANCE) is not None
    reads, syncs = _lead_reads(rsps, lead["id"]), _syncs(rt)

    _post(client, portal, secret, _update_hook(mirrored, {BALANCE: "35000"}))
    jobs()

    assert _last_outcome(rt) == "own_write"
    assert _lead_reads(rsps, lead["id"]) == reads  # not even re-read
    assert _syncs(rt) == syncs


def test_a_person_overwriting_the_balance_gets_it_restored_from_our_books(amo, client, jobs, rt):
    fake, rsps, portal, secret, lead = amo
    jobs()
    ours = _field(fake.leads[lead["id"]], BALANCE)
    # Someone types a balance into the card: amo stores it and sends the hook with a new updated_at.
    stored = fake.leads[lead["id"]]
    stored["custom_fields_values"] = [
        {**item, "values": [{"value": "1"}]} if str(item["field_id"]) == BALANCE else item
        for item in stored["custom_fields_values"]
    ]
    stored["updated_at"] += 7
    _post(client, portal, secret, _update_hook(stored, {BALANCE: "1"}))
    jobs()

    assert _last_outcome(rt) == "handled"
    assert _lead_reads(rsps, lead["id"]) >= 1  # the hook's value was checked against a fresh read
    assert _field(fake.leads[lead["id"]], BALANCE) == ours  # our figure is back
    # …and the write that restored it is itself known as ours: its echo changes nothing further.
    syncs = _syncs(rt)
    _post(client, portal, secret, _update_hook(fake.leads[lead["id"]], {BALANCE: str(ours)}))
    jobs()
    assert _last_outcome(rt) == "own_write"
    assert _syncs(rt) == syncs


def test_a_person_editing_another_field_costs_no_api_call(amo, client, jobs, rt):
    fake, rsps, portal, secret, lead = amo
    jobs()
    stored = fake.leads[lead["id"]]
    stored["updated_at"] += 11
    reads, syncs = _lead_reads(rsps, lead["id"]), _syncs(rt)
    values = {BALANCE: str(_field(stored, BALANCE)), RATE: str(_field(stored, RATE)), "1001": "Палата 12"}
    _post(client, portal, secret, _update_hook(stored, values))
    jobs()

    assert _last_outcome(rt) == "handled"
    assert _lead_reads(rsps, lead["id"]) == reads
    assert _syncs(rt) == syncs
