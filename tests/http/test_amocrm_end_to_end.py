"""From install to a note in the amoCRM deal feed: OAuth, registry, outbox job, client, fake amo v4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from sqlalchemy import select

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


def test_a_moved_account_is_followed_to_its_new_host_and_the_portal_remembers_it(amo_rt, make_portal):
    import base64
    from datetime import UTC, datetime, timedelta

    from connectors.types import OAuthToken
    from widget_server.tokens import DbTokenSource

    claims = base64.urlsafe_b64encode(json.dumps({"api_domain": "api-b.amocrm.ru"}).encode()).decode()
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    expired = OAuthToken(f"e30.{claims.rstrip('=')}.c2ln", "refresh-old", an_hour_ago)
    portal = make_portal(kind="amocrm", slug="moved", external_id="29876543", domain="clinic.amocrm.ru")
    DbTokenSource(amo_rt, portal.id).save(expired)
    fixtures = Path(__file__).resolve().parents[1] / "fixtures/amocrm/oauth"
    subdomain = json.loads((fixtures / "account_current_subdomain.json").read_text())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post("https://clinic.amocrm.ru/oauth2/access_token", status=404)
        rsps.get("https://api-b.amocrm.ru/oauth2/account/current/subdomain", json=subdomain)
        rsps.post("https://newclinic.amocrm.ru/oauth2/access_token", json=TOKEN)
        fake = FakeAmo(rsps, subdomain="newclinic", token=TOKEN["access_token"], rate_limit=None)
        pipeline = fake.pipelines[0]
        lead = fake.new_lead("Петров П. П.", pipeline["id"], pipeline["_embedded"]["statuses"][0]["id"])

        deal = crm_for(portal, amo_rt).get_deal(str(lead["id"]))
        hosts = [(c.request.method, c.request.url.split("?")[0]) for c in rsps.calls]

    assert hosts == [
        ("POST", "https://clinic.amocrm.ru/oauth2/access_token"),  # the old host no longer knows it
        ("GET", "https://api-b.amocrm.ru/oauth2/account/current/subdomain"),
        ("POST", "https://newclinic.amocrm.ru/oauth2/access_token"),
        ("GET", f"https://newclinic.amocrm.ru/api/v4/leads/{lead['id']}"),
    ]
    assert deal.name == "Петров П. П."
    with amo_rt.db.transaction() as s:
        assert s.get(Portal, portal.id).domain == "newclinic.amocrm.ru"
    stored = DbTokenSource(amo_rt, portal.id).get()
    assert stored.access_token == TOKEN["access_token"] and stored.refresh_token == TOKEN["refresh_token"]


def test_many_notes_queued_together_reach_amo_in_one_request(amo_rt, make_api, jobs):
    from widget_server.models import OutboxJob
    from widget_server.outbox import enqueue_outbox

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post("https://clinic.amocrm.ru/oauth2/access_token", json=TOKEN)
        fake = FakeAmo(rsps, token=TOKEN["access_token"], rate_limit=None)
        installed = complete_install(amo_rt, "clinic.amocrm.ru", "auth-code")
        pipeline = fake.pipelines[0]
        first = pipeline["_embedded"]["statuses"][0]["id"]
        leads = [fake.new_lead(f"Пациент {i}", pipeline["id"], first) for i in range(30)]
        with amo_rt.db.transaction() as session:  # e.g. the night's daily charges: a note per stay
            for i, lead in enumerate(leads):
                enqueue_outbox(
                    session,
                    portal_id=installed.portal_id,
                    operation="add_note",
                    payload={"deal_id": str(lead["id"]), "text": f"Списание за сутки № {i}"},
                    idempotency_key=f"daily-{i}",
                    deal_id=str(lead["id"]),
                )
        jobs()
        posts = [c for c in rsps.calls if c.request.method == "POST" and "/notes" in c.request.url]

    assert len(posts) == 1 and posts[0].request.url.endswith("/api/v4/leads/notes")
    texts = sorted(n["params"]["text"] for n in fake.notes.values())
    assert texts == sorted(f"Списание за сутки № {i}" for i in range(30))
    with amo_rt.db.transaction() as session:
        jobs_done = session.scalars(select(OutboxJob).where(OutboxJob.operation == "add_note")).all()
        assert {j.state for j in jobs_done} == {"done"}
        assert len({j.result["note_id"] for j in jobs_done}) == 30


def test_the_settings_pickers_offer_the_amo_accounts_real_pipelines_and_fields(amo_rt, make_api):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post("https://clinic.amocrm.ru/oauth2/access_token", json=TOKEN)
        fake = FakeAmo(rsps, token=TOKEN["access_token"], rate_limit=None)
        installed = complete_install(amo_rt, "clinic.amocrm.ru", "auth-code")
        with amo_rt.db.transaction() as s:
            portal = s.get(Portal, installed.portal_id)
        catalogue = make_api(portal, "admin").get("/api/v1/settings/catalogue").get_json()

    assert catalogue["supported"] == {"deal_fields": True, "pipelines": True}
    pipeline = fake.pipelines[0]
    offered = {p["id"]: p for p in catalogue["pipelines"]}[str(pipeline["id"])]
    assert offered["name"] == pipeline["name"]
    assert [s["id"] for s in offered["stages"]][:1] == [str(pipeline["_embedded"]["statuses"][0]["id"])]
    assert "1002" in {f["id"] for f in catalogue["deal_fields"]}
