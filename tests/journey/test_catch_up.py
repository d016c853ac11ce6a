"""The sweep after downtime (Asia/Vladivostok): everything due while the sweeps were stopped is decided
once, in the portal's timezone — fired inside its window, `expired` past it — and neither a second restart,
two evaluators at once, nor replayed hooks add anything."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from connectors.types import DealUpdated, StageRef
from widget_server.jobs.journey import journey_on_deal_event, sweep_portal
from widget_server.models import JourneySweep, OutboxJob, RuleFiring

from .conftest import count, deal_of, enable_templates, firings, make_clinic, sync, visit

VVO = ZoneInfo("Asia/Vladivostok")


def _states(rt, portal_id: int) -> dict[str, int]:
    with rt.db.transaction() as s:
        rows = s.execute(
            select(RuleFiring.state, func.count())
            .where(RuleFiring.portal_id == portal_id)
            .group_by(RuleFiring.state)
        )
        return {state: n for state, n in rows}


def _in_threads(*calls) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(calls))

    def run(call) -> None:  # type: ignore[no-untyped-def]
        try:
            barrier.wait()
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_catch_up_after_downtime(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "vvo", "Asia/Vladivostok")
    crm_users(clinic)
    enable_templates(rt, clinic, "confirm_d1", "nps")
    frozen.set(datetime(2026, 3, 9, 20, 0, tzinfo=VVO))
    booked = {
        "early": datetime(2026, 3, 11, 10, 0, tzinfo=VVO),  # asked 10.03 10:00: long past at the restart
        "done": datetime(2026, 3, 12, 9, 0, tzinfo=VVO),  # completed: NPS due 13.03 10:00
        "next": datetime(2026, 3, 14, 9, 0, tzinfo=VVO),  # asked 13.03 10:00: still inside its window
    }
    sync(rt, clinic, *(visit(VVO, f"V-{k}", str(200 + i), at) for i, (k, at) in enumerate(booked.items())))
    jobs()
    sweep_portal(clinic.id)
    # Local 10:00 in Vladivostok is 00:00 UTC.
    request = [
        f for f in firings(rt, clinic.id) if f.occurrence.startswith("visit:") and f.planned_at.hour == 0
    ]
    assert {f.planned_at.date().isoformat() for f in request} >= {"2026-03-10", "2026-03-13"}

    # Sweeps stop from 09.03 20:00; the visit of the 12th completes; the service is back 13.03 12:00.
    frozen.set(datetime(2026, 3, 12, 11, 0, tzinfo=VVO))
    sync(rt, clinic, visit(VVO, "V-done", "201", booked["done"], status="completed", changed_at=frozen.now))
    frozen.set(datetime(2026, 3, 13, 12, 0, tzinfo=VVO))
    sweep_portal(clinic.id)
    jobs()
    decided = {
        (f.deal_id, f.occurrence.split(":")[0], f.planned_at.astimezone(VVO).strftime("%d %H:%M"), f.state)
        for f in firings(rt, clinic.id)
        if f.state != "scheduled"
    }
    early, done, nxt = (deal_of(rt, f"V-{k}") for k in ("early", "done", "next"))
    assert decided == {
        (early, "visit", "10 10:00", "expired"),  # confirmation request, 8 h window
        (early, "visit", "10 18:00", "expired"),  # the silence task, 6 h window
        (done, "visit", "11 10:00", "expired"),
        (done, "visit", "11 18:00", "expired"),
        (done, "visit", "13 10:00", "fired"),  # NPS: inside its 12 h window
        (early, "visit", "12 10:00", "expired"),  # its NPS occurrence passed too
        (nxt, "visit", "13 10:00", "fired"),  # confirmation for the 14th
    }
    outbox = count(rt, OutboxJob)
    with rt.db.transaction() as s:
        mark = s.scalar(select(JourneySweep).where(JourneySweep.portal_id == clinic.id))
        assert mark.swept_until == frozen.now

    # A second restart at the same moment, then two evaluators at once: nothing more.
    sweep_portal(clinic.id)
    _in_threads(lambda: sweep_portal(clinic.id), lambda: sweep_portal(clinic.id))
    assert count(rt, OutboxJob) == outbox

    # 18:00: the silence task for the 14th is due; two evaluators race for it and it fires once.
    frozen.set(datetime(2026, 3, 13, 18, 0, tzinfo=VVO))
    before = _states(rt, clinic.id)
    _in_threads(lambda: sweep_portal(clinic.id), lambda: sweep_portal(clinic.id))
    after = _states(rt, clinic.id)
    assert after["fired"] == before["fired"] + 1
    silence = [j for j in _jobs(rt) if j.operation == "create_task" and j.deal_id == nxt]
    assert len(silence) == 1


def _jobs(rt) -> list[OutboxJob]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        rows = list(s.scalars(select(OutboxJob).order_by(OutboxJob.id)))
        s.expunge_all()
        return rows


def test_replayed_hooks_and_concurrent_handlers_fire_once(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "lost", "Europe/Moscow")
    crm_users(clinic)
    enable_templates(rt, clinic, "lost_review")
    frozen.set(datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("Europe/Moscow")))
    event = DealUpdated(
        clinic.external_id,
        None,
        "501",
        stage=StageRef("Первичный приём", "lost"),
        fields={"Причина отказа": "Дорого"},
    )
    _in_threads(*[lambda: journey_on_deal_event(clinic.id, event)] * 4)
    journey_on_deal_event(clinic.id, event)  # a replay of the same hook
    fired = firings(rt, clinic.id, state="fired")
    assert len(fired) == 1
    assert [j.operation for j in _jobs(rt)] == ["create_task", "add_note"]
    # The deal comes back and is lost again later: a new occurrence.
    frozen.set(frozen.now + timedelta(days=2))
    journey_on_deal_event(
        clinic.id,
        DealUpdated(clinic.external_id, None, "501", stage=StageRef("Первичный приём", "Взяли в работу")),
    )
    journey_on_deal_event(clinic.id, event)
    assert len(firings(rt, clinic.id, state="fired")) == 2
