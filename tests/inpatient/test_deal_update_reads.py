"""Bitrix24 ONCRMDEALUPDATE names only the deal, so a portal with «ready to sign» mapped reads the deal
(`crm.item.get`, answered as tests/fixtures/bitrix24/methods/crm.item.get.json, after one
`crm.item.fields`) to learn its stage. A deal
already asked, or last seen outside the stage's pipeline (a building's category), is not read again: it
comes back only through ONCRMDEALMOVETOCATEGORY, which names its stage. The calls are counted on the wire."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import responses

from connectors.bitrix24.events import parse_event
from connectors.types import DealStageChanged, DealUpdated, StageRef
from tests.bitrix24.conftest import make_client
from tests.support.fake_bitrix24 import FakeBitrix24
from widget_server.jobs import inpatient as inpatient_jobs
from widget_server.jobs.inpatient import inpatient_on_deal_event
from widget_server.models import Portal

from .test_ready_to_sign import _asks, _requests

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/bitrix24"
MEMBER = "a223c6b3710f85df22e9377d6c4f7553"
# Bitrix24 numbers categories: 0 is the default (sales) one, 3 a building's.
READY = {"pipeline_id": "0", "stage_id": "PREPARATION"}


class Wire:
    """The portal's `crm.item.get` answers, the recorded body with the deal's category and stage as set."""

    def __init__(self, rsps: responses.RequestsMock, fake: FakeBitrix24) -> None:
        self.recorded = json.loads((FIXTURES / "methods/crm.item.get.json").read_text("utf-8"))["body"]
        self.where: dict[int, tuple[int, str]] = {}
        self.reads: list[int] = []
        rsps.add_callback(responses.POST, f"{fake.client_endpoint}crm.item.get", callback=self._answer)
        # The deal's field types, read once per client before the first deal is parsed.
        fields = json.loads((FIXTURES / "methods/crm.item.fields.json").read_text("utf-8"))["body"]
        rsps.post(f"{fake.client_endpoint}crm.item.fields", json=fields)

    def _answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        deal_id = int(json.loads(request.body)["id"])
        self.reads.append(deal_id)
        body = copy.deepcopy(self.recorded)
        category, stage = self.where[deal_id]
        body["result"]["item"].update(id=deal_id, categoryId=category, stageId=stage)
        return 200, {"Content-Type": "application/json"}, json.dumps(body)


@pytest.fixture
def wire(rt, hospital, redis_client, monkeypatch):  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        row = s.get(Portal, hospital.id)
        row.settings = {**row.settings, "stages": {"ready_to_sign": READY}}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeBitrix24(None)
        client, _ = make_client(fake, redis_client)
        monkeypatch.setattr(inpatient_jobs, "crm_for", lambda portal, rt: client)
        yield Wire(rsps, fake)


def _update(portal: Portal, deal_id: int) -> None:
    raw = (FIXTURES / "incoming/oncrmdealupdate.form").read_text().strip()
    event = parse_event(MEMBER, raw)
    assert isinstance(event, DealUpdated) and event.stage is None
    inpatient_on_deal_event(portal.id, dataclasses.replace(event, deal_id=str(deal_id)))


def _moved(portal: Portal, deal_id: int, category: str, stage: str) -> None:
    event = DealStageChanged(MEMBER, None, deal_id=str(deal_id), stage=StageRef(category, stage))  # type: ignore[arg-type]
    inpatient_on_deal_event(portal.id, event)


def test_updates_of_a_deal_in_a_building_category_are_read_once(rt, hospital, wire) -> None:  # type: ignore[no-untyped-def]
    wire.where[759] = (3, "C3:NEW")
    for _ in range(5):
        _update(hospital, 759)
    assert wire.reads == [759]
    assert _asks(rt) == 0


def test_a_sales_deal_is_read_on_each_update_until_asked_then_never(rt, hospital, wire) -> None:  # type: ignore[no-untyped-def]
    wire.where[102] = (0, "NEW")
    _update(hospital, 102)
    _update(hospital, 102)  # still in the sales category: the next update may be the move into the stage
    assert wire.reads == [102, 102]
    wire.where[102] = (0, "PREPARATION")
    _update(hospital, 102)
    assert _requests(rt) == [("102", "0", "PREPARATION")] and _asks(rt) == 1
    for _ in range(3):
        _update(hospital, 102)
    assert wire.reads == [102, 102, 102]


def test_a_deal_moved_back_into_the_sales_category_is_read_again(rt, hospital, wire) -> None:  # type: ignore[no-untyped-def]
    wire.where[104] = (3, "C3:NEW")
    _update(hospital, 104)
    _update(hospital, 104)
    assert wire.reads == [104]
    # ONCRMDEALMOVETOCATEGORY names the stage: no read, and the deal is watched again.
    _moved(hospital, 104, "0", "NEW")
    assert wire.reads == [104]
    wire.where[104] = (0, "PREPARATION")
    _update(hospital, 104)
    assert wire.reads == [104, 104]
    assert _requests(rt) == [("104", "0", "PREPARATION")]
    # A move straight into a building's category is remembered too.
    _moved(hospital, 105, "3", "C3:NEW")
    _update(hospital, 105)
    assert wire.reads == [104, 104]
