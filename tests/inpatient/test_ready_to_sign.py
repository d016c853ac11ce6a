"""«Готов подписать договор» from the CRM stage: the setting is checked against the CRM's pipelines; a sales
deal entering the mapped stage (sandbox hook, amoCRM `leads[status]`, Bitrix24 ONCRMDEALUPDATE) asks its
manager once for the arrival date and the budget; any other stage asks nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlalchemy import func, select

from connectors.amocrm.hooks import parse_account_hook
from connectors.bitrix24.events import parse_event
from connectors.types import DealStageChanged, DealUpdated, NewDeal, StageRef
from widget_server.inpatient.arrivals import ASK_FOR_ARRIVAL
from widget_server.jobs.inpatient import inpatient_on_deal_event
from widget_server.models import ArrivalRequest, ExpectedArrival, OutboxJob, Portal, PortalSettingsVersion

from .conftest import READY, map_ready_stage, stage_hook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _requests(rt) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        rows = s.execute(select(ArrivalRequest.deal_id, ArrivalRequest.pipeline_id, ArrivalRequest.stage_id))
        return [tuple(r) for r in rows]


def _asks(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(
            select(func.count())
            .select_from(OutboxJob)
            .where(OutboxJob.idempotency_key.like("inpatient-task:ready%"))
        )


def _set_stage(rt, portal, stage: dict) -> None:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        row.settings = {**row.settings, "stages": {"ready_to_sign": stage}}


def test_the_setting_names_a_real_stage_or_is_refused_naming_it(apis, rt, hospital, deal):
    admin = apis["admin"]
    before = admin.get("/api/v1/settings").get_json()
    moon = {"ready_to_sign": {"pipeline_id": "sales", "stage_id": "moon"}}
    wrong = admin.put("/api/v1/settings", json={"version": before["version"], "stages": moon})
    assert wrong.status_code == 422, wrong.get_json()
    assert "no stage 'moon'" in wrong.get_json()["error"]["fields"]["stages.ready_to_sign"][0]
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(PortalSettingsVersion)) == 0
        assert "stages" not in s.get(Portal, hospital.id).settings

    map_ready_stage(apis)
    assert admin.get("/api/v1/settings").get_json()["settings"]["stages"]["ready_to_sign"] == READY
    with rt.db.transaction() as s:
        assert s.get(Portal, hospital.id).settings["stages"]["ready_to_sign"] == READY


def test_entering_the_stage_asks_the_manager_once(apis, rt, client, crm, staff, hospital, deal, jobs):
    map_ready_stage(apis)
    stage_hook(client, rt, hospital, deal, READY, "evt-1")
    stage_hook(client, rt, hospital, deal, READY, "evt-2")  # amo repeats the whole lead
    jobs()
    assert [(t.responsible_user_id, t.text) for t in crm.tasks_for(deal)] == [
        (staff.manager, ASK_FOR_ARRIVAL)
    ]
    assert any("указать дату заезда и бюджет" in n for n in crm.notes_for(deal))

    # Out of the stage and back: still asked once per deal.
    stage_hook(client, rt, hospital, deal, {"pipeline_id": "sales", "stage_id": "talks"}, "evt-3")
    stage_hook(client, rt, hospital, deal, READY, "evt-4")
    jobs()
    assert len(crm.tasks_for(deal)) == 1
    assert _requests(rt) == [(deal, "sales", "ready_to_sign")]


def test_other_stages_and_unmapped_portals_ask_nothing(apis, rt, client, crm, hospital, deal, jobs):
    stage_hook(client, rt, hospital, deal, READY, "evt-1")  # not mapped yet
    jobs()
    map_ready_stage(apis)
    stage_hook(client, rt, hospital, deal, {"pipeline_id": "sales", "stage_id": "talks"}, "evt-2")
    stage_hook(client, rt, hospital, deal, {"pipeline_id": "corpus-1", "stage_id": "ready_to_sign"}, "evt-3")
    jobs()
    assert crm.tasks_for(deal) == [] and _requests(rt) == [] and _asks(rt) == 0


def test_a_deal_whose_arrival_is_already_known_is_not_asked(
    apis, rt, client, crm, hospital, deal, frozen, jobs
):
    frozen.set_local("2026-11-23 15:00")
    map_ready_stage(apis)
    given = apis["staff"].post(f"/api/v1/deals/{deal}/stay/arrival", json={"arrival_date": "2026-11-24"})
    assert given.status_code == 201
    stage_hook(client, rt, hospital, deal, READY, "evt-1")
    jobs()
    assert crm.tasks_for(deal) == [] and _requests(rt) == []


def test_amocrm_leads_status_hook_asks(rt, hospital):
    raw = (FIXTURES / "amocrm/hooks/leads_status__moved.form").read_text().strip()
    batch = parse_account_hook("29842716", raw)
    [event] = [e for e in getattr(batch, "events", (batch,)) if isinstance(e, DealStageChanged)]
    assert (event.deal_id, event.stage) == ("15318175", StageRef("8572511", "67548619"))
    _set_stage(rt, hospital, {"pipeline_id": "8572511", "stage_id": "67548619"})
    inpatient_on_deal_event(hospital.id, event)
    inpatient_on_deal_event(hospital.id, event)
    assert _requests(rt) == [("15318175", "8572511", "67548619")]
    assert _asks(rt) == 1


def test_bitrix24_deal_update_names_no_stage_so_the_deal_is_read(rt, hospital, crm, deal, staff, jobs):
    raw = (FIXTURES / "bitrix24/incoming/oncrmdealupdate.form").read_text().strip()
    event = parse_event("a223c6b3710f85df22e9377d6c4f7553", raw)
    assert isinstance(event, DealUpdated) and event.stage is None
    _set_stage(rt, hospital, READY)
    # The hook's deal, as the sandbox CRM numbers it: the stage comes from reading that deal.
    inpatient_on_deal_event(hospital.id, dataclasses.replace(event, deal_id=deal))
    jobs()
    assert [(t.responsible_user_id, t.text) for t in crm.tasks_for(deal)] == [
        (staff.manager, ASK_FOR_ARRIVAL)
    ]

    inpatient_on_deal_event(hospital.id, dataclasses.replace(event, deal_id=deal))  # asked: no second read
    other = crm.create_deal(NewDeal(name="Иванов", stage=StageRef("sales", "talks")), idempotency_key="d-2")
    inpatient_on_deal_event(hospital.id, dataclasses.replace(event, deal_id=other.id))
    assert _asks(rt) == 1 and _requests(rt) == [(deal, "sales", "ready_to_sign")]


def test_the_tab_reads_what_was_asked_and_what_was_given(
    apis, rt, client, hospital, building, deal, frozen, jobs
):
    frozen.set_local("2026-11-23 15:00")
    staff_api = apis["staff"]
    assert staff_api.get(f"/api/v1/deals/{deal}/stay/arrival").get_json() == {
        "deal_id": deal, "asked_at": None, "arrival": None}  # fmt: skip
    map_ready_stage(apis)
    stage_hook(client, rt, hospital, deal, READY, "evt-1")
    jobs()
    asked = staff_api.get(f"/api/v1/deals/{deal}/stay/arrival").get_json()
    assert asked["asked_at"] is not None and asked["arrival"] is None

    given = staff_api.post(f"/api/v1/deals/{deal}/stay/arrival", json={
        "arrival_date": "2026-11-24", "budget": "150000.00", "profile": "neurology"})  # fmt: skip
    assert given.status_code == 201, given.get_json()
    assert staff_api.get(f"/api/v1/deals/{deal}/stay/arrival").get_json()["arrival"] == {
        "arrival_date": "2026-11-24", "budget": "150000.00", "profile": "neurology",
        "building_id": building["id"], "building": "Корпус 1"}  # fmt: skip
    assert apis["viewer"].get(f"/api/v1/deals/{deal}/stay/arrival").status_code == 403


def test_a_bad_arrival_names_the_field_and_writes_nothing(apis, rt, deal, building, frozen):
    frozen.set_local("2026-11-23 15:00")
    for body, field in [
        ({"arrival_date": "2026-11-24", "budget": "-5"}, "budget"),
        ({"arrival_date": "2026-11-24", "budget": "12.345"}, "budget"),
        ({"arrival_date": "24.11.2026"}, "arrival_date"),
        ({"arrival_date": "2026-11-22"}, "arrival_date"),
        ({"arrival_date": "2026-11-24", "profile": "cardiology"}, "profile"),
    ]:
        response = apis["staff"].post(f"/api/v1/deals/{deal}/stay/arrival", json=body)
        assert response.status_code == 422, (body, response.get_json())
        assert field in response.get_json()["error"]["fields"], response.get_json()
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(ExpectedArrival)) == 0
        assert s.scalar(select(func.count()).select_from(OutboxJob)) == 0
