"""From install to a note in the amoCRM deal feed: OAuth, registry, outbox job, client, fake amo v4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from tests.support.fake_amocrm import FakeAmo
from widget_server.amocrm_install import complete_install
from widget_server.models import Portal
from widget_server.registry import crm_for

TOKEN = json.loads((Path(__file__).resolve().parents[1] / "fixtures/amocrm/oauth/token__ok.json").read_text())


@pytest.fixture
def amo_rt(rt, monkeypatch):
    monkeypatch.setattr(
        rt,
        "settings",
        rt.settings.with_overrides(amo_client_id="client-id", amo_client_secret="client-secret-0123456789"),
    )
    return rt


def test_a_note_reaches_the_amo_deal_through_the_outbox(amo_rt, make_api, jobs):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post("https://clinic.amocrm.ru/oauth2/access_token", json=TOKEN)  # before the fake's catch-all
        fake = FakeAmo(rsps, token=TOKEN["access_token"])
        installed = complete_install(amo_rt, "clinic.amocrm.ru", "auth-code")
        with amo_rt.db.transaction() as s:
            portal = s.get(Portal, installed.portal_id)
        assert type(crm_for(portal, amo_rt)).__name__ == "AmoCrmClient"
        pipeline = fake.pipelines[0]
        first_stage = pipeline["_embedded"]["statuses"][0]["id"]
        lead = fake.new_lead("Петров П. П.", pipeline["id"], first_stage)
        staff = make_api(portal, "staff")
        response = staff.post(f"/api/v1/deals/{lead['id']}/notes", json={"text": "Пациент принят в корпус 1"},
                              key="note-e2e")  # fmt: skip
        assert response.status_code == 202
        assert not fake.notes  # nothing is sent inside the request
        jobs()
        [note] = fake.notes.values()
        assert note["entity_id"] == lead["id"]
        assert note["note_type"] == "extended_service_message"
        assert note["params"]["text"] == "Пациент принят в корпус 1"
        assert note["__dp"] is False  # our notes must not fire Digital Pipeline triggers
        assert staff.get(f"/api/v1/outbox/{response.get_json()['id']}").get_json()["state"] == "done"
