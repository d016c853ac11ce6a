"""The journey's follow-ups: a tag is added to the deal's tags (never written over them), a flagged phone
closes the lead, confirm_d1's call-task variant, «не был более года» from the visits, curator and plan-link
fields as settings, and amoCRM's own loss reason."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from widget_server.jobs.journey import sweep_portal
from widget_server.journey import Catalogue, create_rule
from widget_server.models import OutboxJob, Portal
from widget_server.sandbox.crm import SandboxCrm

from .conftest import deal_of, firings, make_clinic, sync, visit

MSK = ZoneInfo("Europe/Moscow")


def _rule(rt, portal_id: int, doc: dict) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        portal = s.get(Portal, portal_id)
        return create_rule(s, portal, {"enabled": True, **doc}, "test", Catalogue()).id


def test_the_tag_joins_the_tags_the_deal_has(rt, make_portal, crm_users, frozen, jobs):
    clinic = make_clinic(make_portal, rt, "tags", "Europe/Moscow")
    crm_users(clinic)
    _rule(
        rt,
        clinic.id,
        {
            "name": "Тег на записи",
            "trigger": {"type": "appointment_status", "statuses": ["booked"]},
            "actions": [{"type": "tag", "tag": "Комплексное лечение"}],
        },
    )
    crm = SandboxCrm(rt.db, clinic.id, timezone="Europe/Moscow")
    frozen.set(datetime(2026, 3, 5, 12, 0, tzinfo=MSK))
    sync(rt, clinic, visit(MSK, "T1", "301", datetime(2026, 3, 12, 10, 0, tzinfo=MSK)))
    jobs()
    deal_id = deal_of(rt, "T1")
    crm.add_deal_tag(deal_id, "VIP")
    frozen.set(datetime(2026, 3, 5, 12, 10, tzinfo=MSK))  # past the wait for the deal to be created
    sweep_portal(clinic.id)
    jobs()
    (fired,) = firings(rt, clinic.id, state="fired")
    with rt.db.transaction() as s:
        ops = list(s.scalars(select(OutboxJob.operation).where(OutboxJob.origin == f"journey:{fired.id}")))
    assert "journey_add_tag" in ops and "update_deal_fields" not in ops
    assert crm.tags_for(deal_id) == ["VIP", "Комплексное лечение"]
