"""Before a deal has a stay account: whether its card opens on «Стационар» (GET …/stay/inpatient-business:
asked for its arrival, arrival given, in a building's pipeline, in the mapped ready-to-sign stage; any other
deal keeps the ledger's screen), and changing the arrival until the patient is admitted (same checks as the
first time: 422 naming the field and nothing written; once admitted, 409)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from connectors.types import NewDeal, StageRef
from widget_server.models import ArrivalRequest, ExpectedArrival, OutboxJob
from widget_server.registry import UnsupportedPortal

from .conftest import READY, admit
from .test_ready_to_sign import _set_stage


def _business(apis, deal: str, role: str = "viewer") -> tuple[bool, str | None]:  # type: ignore[no-untyped-def]
    response = apis[role].get(f"/api/v1/deals/{deal}/stay/inpatient-business")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return body["inpatient"], body["reason"]


def test_which_deals_open_on_the_inpatient_tab(apis, rt, crm, hospital, building, staff):  # type: ignore[no-untyped-def]
    def deal(name: str, pipeline: str, stage: str) -> str:
        return crm.create_deal(NewDeal(name=name, stage=StageRef(pipeline, stage)), idempotency_key=name).id

    talks = deal("talks", "sales", "talks")
    assert _business(apis, talks) == (False, None)
    in_building = deal("in-building", "corpus-1", "in_stay")
    assert _business(apis, in_building) == (True, "building_pipeline")
    ready = deal("ready", "sales", "ready_to_sign")
    assert _business(apis, ready) == (False, None)  # no ready-to-sign stage mapped yet
    _set_stage(rt, hospital, READY)
    assert _business(apis, ready) == (True, "ready_stage")
    assert _business(apis, talks) == (False, None)

    with rt.db.transaction() as s:
        s.add(
            ArrivalRequest(
                portal_id=hospital.id, deal_id=talks, pipeline_id="sales", stage_id="ready_to_sign"
            )
        )
    assert _business(apis, talks) == (True, "asked")
    given = apis["staff"].post(
        f"/api/v1/deals/{in_building}/stay/arrival", json={"arrival_date": "2026-12-01"}
    )
    assert given.status_code == 201, given.get_json()
    assert _business(apis, in_building) == (True, "arrival")


@pytest.mark.parametrize(
    ("with_building", "failure"),
    [
        (False, AssertionError("a clinic without buildings read the CRM")),  # not a hospital: no read
        (True, UnsupportedPortal("no connector")),  # the CRM cannot say: the ledger's screen
    ],
)
def test_no_answer_from_the_crm_is_the_ledger_screen(request, apis, crm, hospital, monkeypatch, with_building,
                                                      failure):  # type: ignore[no-untyped-def]  # fmt: skip
    if with_building:
        request.getfixturevalue("building")
    deal = crm.create_deal(NewDeal(name="y", stage=StageRef("corpus-1", "in_stay")), idempotency_key="y").id

    def crm_for(*_args):  # type: ignore[no-untyped-def]
        raise failure

    monkeypatch.setattr("widget_server.http.api_inpatient.crm_for", crm_for)
    assert _business(apis, deal) == (False, None)


def test_the_arrival_changes_until_admission(apis, rt, deal, building, tariff, frozen):  # type: ignore[no-untyped-def]
    frozen.set_local("2026-11-23 15:00")
    url = f"/api/v1/deals/{deal}/stay/arrival"
    first = apis["staff"].post(url, json={"arrival_date": "2026-11-30", "budget": "100000.00"})
    assert first.status_code == 201, first.get_json()
    changed = apis["staff"].post(url, json={"arrival_date": "2026-12-02", "budget": "150000.00"})
    assert changed.status_code == 201, changed.get_json()
    shown = apis["staff"].get(url).get_json()["arrival"]
    assert (shown["arrival_date"], shown["budget"]) == ("2026-12-02", "150000.00")

    def state():  # type: ignore[no-untyped-def]
        with rt.db.transaction() as s:
            row = s.scalar(select(ExpectedArrival))
            return (row.arrival_date.isoformat(), row.budget_minor,
                    s.scalar(select(func.count()).select_from(OutboxJob)))  # fmt: skip

    before = state()
    for body, field in [
        ({"arrival_date": "2026-11-22", "budget": "1.00"}, "arrival_date"),
        ({"arrival_date": "2026-12-03", "budget": "12.345"}, "budget"),
    ]:
        refused = apis["staff"].post(url, json=body)
        assert refused.status_code == 422 and field in refused.get_json()["error"]["fields"]
    assert state() == before

    admit(apis, building, tariff, deal, date="2026-11-23")
    before = state()
    late = apis["staff"].post(url, json={"arrival_date": "2026-12-05"})
    assert late.status_code == 409 and "arrival_date" in late.get_json()["error"]["fields"]
    assert state() == before
