"""The MIS mirror on the real amoCRM client against the v4 fake: an import's visit notes reach amoCRM in one
`POST /api/v4/leads/notes` (its batch form), not one request each."""

from __future__ import annotations

import json
from pathlib import Path

import responses
from sqlalchemy import select

from connectors.types import AppointmentBatch
from tests.support.fake_amocrm import FakeAmo
from widget_server.amocrm_install import complete_install
from widget_server.appointments.sync import ingest, start_run
from widget_server.models import MisAppointment, Portal

from .test_mirror_batching import _patient

TOKEN = json.loads((Path(__file__).resolve().parents[1] / "fixtures/amocrm/oauth/token__ok.json").read_text())


def test_an_imports_notes_reach_amocrm_in_one_batch_request(rt, jobs, monkeypatch):
    overrides = {"amo_client_id": "cid", "amo_client_secret": "client-secret-0123456789"}
    monkeypatch.setattr(rt, "settings", rt.settings.with_overrides(**overrides))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post("https://clinic.amocrm.ru/oauth2/access_token", json=TOKEN)
        fake = FakeAmo(rsps, token=TOKEN["access_token"], rate_limit=None)
        portal_id = complete_install(rt, "clinic.amocrm.ru", "auth-code").portal_id
        pipeline = fake.pipelines[0]
        stage = pipeline["_embedded"]["statuses"][1]
        booked = {"pipeline_id": str(pipeline["id"]), "stage_id": str(stage["id"])}
        with rt.db.transaction() as s:
            portal = s.get(Portal, portal_id)
            mis = {"stage_map": {"primary": {"booked": booked}}}
            portal.settings = {**(portal.settings or {}), "mis": mis}
        with rt.db.transaction() as s:
            portal = s.get(Portal, portal_id)
            visits = tuple(_patient(i) for i in range(3))
            ingest(s, portal, start_run(s, portal, "ident_db"), AppointmentBatch(visits, (), None))
        before = len(rsps.calls)
        jobs()
        calls = [(c.request.method, c.request.url.split("?")[0].split(".ru")[1]) for c in rsps.calls[before:]]
    note_posts = [c for c in calls if c == ("POST", "/api/v4/leads/notes")]
    assert len(note_posts) == 1
    with rt.db.transaction() as s:
        deals = {int(d) for d in s.scalars(select(MisAppointment.deal_id))}
    assert len(deals) == 3
    noted = [n for n in fake.notes.values() if n["entity_id"] in deals]
    assert len(noted) == 3
    assert all(n["params"]["text"].endswith(": Записан на приём") for n in noted)
    # No note went alone (`POST /api/v4/leads/{id}/notes`).
    assert [c for c in calls if c[1].endswith("/notes")] == note_posts
