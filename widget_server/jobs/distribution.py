"""Lead distribution in the background: the periodic sweep (redistribute untaken leads, hand over leads of
operators whose shift ended, end silent shifts, drain the queues), the simulator job, and the reactions
to CRM events (new lead, stage change, DP action, a person's reassignment)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from connectors.base import CrmClient, WorkDaySource
from connectors.errors import ConnectorError, Rejected
from connectors.types import (
    CrmEvent,
    Deal,
    DealCreated,
    DealStageChanged,
    DealUpdated,
    DpAction,
    Handover,
    RobotCall,
)

from .. import clock, runtime
from ..db import mark_read_only
from ..distribution import DealContext, assign_deal, drain_queue, mark_taken, record_manual, redistribute_due
from ..distribution.crm_links import sticky_owners
from ..distribution.operators import set_status
from ..distribution.queue import close_assignment
from ..distribution.rules import active_member_ids, has_active_rules, validate_rule
from ..distribution.simulator import load_history, simulate
from ..models import DistributionAssignment, OperatorState, Portal, PortalUser
from ..registry import crm_for
from .joblog import logged_job

__all__ = [
    "distribute_on_dp_action",
    "distribute_on_new_deal",
    "distribute_on_stage_change",
    "distribute_robot",
    "hand_over",
    "record_reassignment",
    "run_distribution_sweep",
    "simulate_job",
    "sync_work_days",
]

log = logging.getLogger(__name__)

CLOSED_STAGES = frozenset({"142", "143", "won", "lost"})
"""amoCRM's fixed won/lost status ids in every pipeline, and the sandbox's closed stages."""
def _deal_context(crm: CrmClient, deal: Deal) -> DealContext:
    return DealContext(
        pipeline_id=deal.stage.pipeline_id,
        stage_id=deal.stage.stage_id,
        sticky_crm_user_ids=sticky_owners(crm, deal),
    )


def hand_over(crm: CrmClient, payload: dict[str, Any], _key: str) -> dict[str, Any]:
    """Outbox operation `distribution_hand_over`: each lead's contacts, company and open tasks go to its new
    responsible, the leads of one transaction in one call (setting a responsible is idempotent by nature, so
    the key is not needed). One lead the CRM refuses (deleted meanwhile) does not hold back the others: the
    batch is then sent lead by lead and the refused ones are named in the result."""
    items = [
        Handover(
            str(item["deal_id"]),
            str(item["user_id"]),
            contacts=bool(item.get("contacts", True)),
            company=bool(item.get("company", True)),
            open_tasks=bool(item.get("open_tasks", True)),
        )
        for item in payload.get("handovers", [payload])
    ]
    try:
        crm.hand_over(items)
        return {"handed_over": len(items)}
    except Rejected:
        if len(items) == 1:
            raise
    refused: list[dict[str, str]] = []
    for item in items:
        try:
            crm.hand_over([item])
        except Rejected as exc:
            refused.append({"deal_id": item.deal_id, "error": str(exc)})
    if len(refused) == len(items):
        raise Rejected(f"every hand-over was refused: {refused}", code="hand_over_refused")
    return {"handed_over": len(items) - len(refused), "refused": refused}


def _end_silent_shifts(session: Any, portal: Portal, at: datetime) -> int:
    """Append the `off` event for operators nobody heard from, so the history (simulator, payroll) says when
    their day ended; the resolver already treated them as off."""
    settings = (portal.settings or {}).get("distribution") or {}
    if settings.get("shift_mode", "hybrid") == "schedule":
        return 0
    limit = at - timedelta(minutes=int(settings.get("auto_off_minutes", 30)))
    ended = 0
    for row in session.scalars(
        select(OperatorState).where(OperatorState.portal_id == portal.id, OperatorState.state == "on_shift")
    ).all():
        seen = max(filter(None, (row.since, row.last_seen_at)))
        if seen < limit:
            user = session.get(PortalUser, row.user_id)
            set_status(
                session, portal, user, "off", reason="нет активности", source="auto", actor="system", now=at
            )
            ended += 1
    return ended


WORK_DAY_SOURCE = "timeman"
"""`distribution.work_day_source`: operators open, pause and close their day in Bitrix24 (timeman)."""


def sync_work_days(portal_id: int, at: datetime) -> int:
    """Operators' statuses from the CRM's work day, for a portal whose `distribution.work_day_source` is
    "timeman": a change is recorded like any other (source "timeman"), and an unchanged open day counts as
    a sign of life, so the silent-shift rule does not end it. Returns how many statuses changed."""
    rt = runtime.current()
    with rt.db.transaction() as session:
        mark_read_only(session)
        portal = session.get(Portal, portal_id)
        settings = ((portal.settings or {}).get("distribution") or {}) if portal is not None else {}
        if portal is None or portal.status != "active" or settings.get("work_day_source") != WORK_DAY_SOURCE:
            return 0
        members = active_member_ids(session, portal_id)
        crm_ids = {
            crm_id: uid
            for uid, crm_id in session.execute(
                select(PortalUser.id, PortalUser.crm_user_id).where(
                    PortalUser.portal_id == portal_id, PortalUser.active.is_(True)
                )
            )
            if uid in members
        }
    crm = crm_for(portal, rt)
    if not crm_ids or not isinstance(crm, WorkDaySource):
        return 0
    states = crm.work_day_states(sorted(crm_ids))
    changed = 0
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        current = {
            row.user_id: row
            for row in session.scalars(select(OperatorState).where(OperatorState.portal_id == portal_id))
        }
        for crm_id, state in sorted(states.items()):
            uid = crm_ids[crm_id]
            row = current.get(uid)
            if row is not None and row.state == state:
                row.last_seen_at = at
                continue
            user = session.get(PortalUser, uid)
            set_status(
                session, portal, user, state, reason="рабочий день в Битрикс24", source="timeman",
                actor="bitrix24", now=at,
            )  # fmt: skip
            changed += 1
    return changed


def _work_day_portals() -> list[int]:
    with runtime.current().db.transaction() as session:
        mark_read_only(session)
        return [
            portal.id
            for portal in session.scalars(select(Portal).where(Portal.status == "active"))
            if ((portal.settings or {}).get("distribution") or {}).get("work_day_source") == WORK_DAY_SOURCE
        ]


@logged_job("distribution_sweep")
def run_distribution_sweep(now: datetime | None = None) -> dict[str, int]:
    """Safe to run at any time and twice: each step acts on the state as it is now."""
    at = now or clock.now_utc()
    totals = {"redistributed": 0, "handed_over": 0, "queued": 0, "drained": 0, "ended": 0, "work_day": 0}
    rt = runtime.current()
    for portal_id in _work_day_portals():
        # Before the sweep, so that it sees who is on shift now; outside any transaction (CRM calls).
        try:
            totals["work_day"] += sync_work_days(portal_id, at)
        except ConnectorError:
            log.warning("work day of portal %s not read this time", portal_id, exc_info=True)
    with rt.db.transaction() as session:
        portal_ids = list(
            session.scalars(
                select(DistributionAssignment.portal_id)
                .where(DistributionAssignment.state.in_(("assigned", "queued")))
                .distinct()
            )
        )
        portal_ids += [
            p for p in session.scalars(select(OperatorState.portal_id).distinct()) if p not in portal_ids
        ]
    for portal_id in sorted(portal_ids):
        # One transaction per portal: one clinic's trouble does not hold back another's leads.
        with rt.db.transaction() as session:
            portal = session.get(Portal, portal_id)
            if portal is None or portal.status != "active":
                continue
            totals["ended"] += _end_silent_shifts(session, portal, at)
            for key, value in redistribute_due(session, portal, now=at).items():
                totals[key] += value
            totals["drained"] += drain_queue(session, portal, now=at)
    return totals


@logged_job("distribution_simulate")
def simulate_job(portal_id: int, rules: list[dict[str, Any]], days: int, now_iso: str) -> dict[str, Any]:
    with runtime.current().db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        normalised = [validate_rule(session, portal, rule) for rule in rules]
        history = load_history(session, portal, days, datetime.fromisoformat(now_iso))
    return simulate(history, normalised)


# --- reactions to CRM events (registered in jobs/inbox.py EVENT_REACTIONS) ----------------------------------


def _unassigned(portal_id: int, deal_id: str) -> bool:
    """No decision yet for this lead (a repeated trigger costs no CRM reads)."""
    with runtime.current().db.transaction() as session:
        mark_read_only(session)
        return (
            session.scalar(
                select(DistributionAssignment.id).where(
                    DistributionAssignment.portal_id == portal_id,
                    DistributionAssignment.deal_id == deal_id,
                    DistributionAssignment.state != "unmatched",
                )
            )
            is None
        )


def _crm(portal_id: int) -> CrmClient | None:
    rt = runtime.current()
    with rt.db.transaction() as session:
        mark_read_only(session)
        portal = session.get(Portal, portal_id)
        if portal is None or portal.status != "active":
            return None
        return crm_for(portal, rt)


def _assign(
    portal_id: int, deal_id: str, trigger: str, context: DealContext, rule_id: int | None = None
) -> None:
    with runtime.current().db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or portal.status != "active":
            return
        assign_deal(session, portal, deal_id, trigger=trigger, context=context, rule_id=rule_id)


def distribute_on_new_deal(portal_id: int, event: CrmEvent) -> None:
    """amoCRM add_lead, Bitrix24 ONCRMDEALADD: the hook has the id only, so the deal is read first."""
    assert isinstance(event, DealCreated)
    rt = runtime.current()
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or portal.status != "active":
            return
        if not has_active_rules(session, portal_id):
            return
        exists = session.scalar(
            select(DistributionAssignment.id).where(
                DistributionAssignment.portal_id == portal_id,
                DistributionAssignment.deal_id == event.deal_id,
                DistributionAssignment.state != "unmatched",
            )
        )
    if exists is not None:
        return  # another trigger (DP, robot, API) was first: one decision per lead
    crm = crm_for(portal, rt)
    _assign(portal_id, event.deal_id, "webhook", _deal_context(crm, crm.get_deal(event.deal_id)))


def distribute_on_dp_action(portal_id: int, event: CrmEvent) -> None:
    """amoCRM Digital Pipeline widget action `distribute`; the rule may be chosen in its settings."""
    assert isinstance(event, DpAction)
    if (event.settings or {}).get("action") != "distribute":
        return  # the DP action of another feature (a deposit, a visit request)
    raw_rule = (event.settings or {}).get("rule_id")
    rule_id = int(raw_rule) if raw_rule and str(raw_rule).isdigit() else None
    context = DealContext(pipeline_id=event.stage.pipeline_id, stage_id=event.stage.stage_id)
    crm = _crm(portal_id) if _unassigned(portal_id, event.deal_id) else None
    if crm is not None:
        # The hook names the stage but not the contact: the deal is read for its sticky owners.
        try:
            deal = crm.get_deal(event.deal_id)
        except Rejected:
            deal = None  # gone from the CRM meanwhile: decide on what the hook said
        if deal is not None:
            context = DealContext(
                pipeline_id=event.stage.pipeline_id,
                stage_id=event.stage.stage_id,
                sticky_crm_user_ids=sticky_owners(crm, deal),
            )
    _assign(portal_id, event.deal_id, f"dp_{event.trigger}", context, rule_id)


def distribute_on_stage_change(portal_id: int, event: CrmEvent) -> None:
    """amoCRM status_lead: a lead that left the stage it was assigned at has been taken into work; a lead
    without an assignment may now match a rule for its new stage."""
    assert isinstance(event, DealStageChanged)
    with runtime.current().db.transaction() as session:
        if not has_active_rules(session, portal_id):
            return
        assignment = session.scalar(
            select(DistributionAssignment).where(
                DistributionAssignment.portal_id == portal_id, DistributionAssignment.deal_id == event.deal_id
            )
        )
        if assignment is not None and assignment.state != "unmatched":
            if event.stage.stage_id in CLOSED_STAGES:
                portal = session.get(Portal, portal_id)
                if portal is not None:
                    close_assignment(session, portal, event.deal_id)
                return
            if (
                assignment.state == "assigned"
                and (assignment.context or {}).get("stage_id") != event.stage.stage_id
            ):
                mark_taken(session, portal_id, event.deal_id)
            return
    context = DealContext(pipeline_id=event.stage.pipeline_id, stage_id=event.stage.stage_id)
    _assign(portal_id, event.deal_id, "webhook_status", context)


def record_reassignment(portal_id: int, event: CrmEvent) -> None:
    """A person changed the responsible in the CRM (our own writes' echoes never get here)."""
    assert isinstance(event, DealUpdated)
    if not event.responsible_user_id:
        return
    with runtime.current().db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is not None:
            record_manual(session, portal, event.deal_id, str(event.responsible_user_id), actor="crm")


def distribute_robot(portal: Portal, client: Any, event: CrmEvent) -> dict[str, Any]:
    """For the Bitrix24 robot `clinicbridge_distribute` (an entry for `jobs/bitrix24.py` ROBOT_ACTIONS):
    reads the deal for its pipeline and stage, assigns it (or finds its existing decision) and returns the
    robot's values for bizproc.event.send: the CRM user id, the decision id and whether it waits."""
    assert isinstance(event, RobotCall)
    deal = client.get_deal(event.deal_id)
    raw_rule = (event.params or {}).get("rule_id")
    rule_id = int(raw_rule) if raw_rule and str(raw_rule).isdigit() else None
    context = (
        _deal_context(client, deal)
        if _unassigned(portal.id, event.deal_id)
        else DealContext(pipeline_id=deal.stage.pipeline_id, stage_id=deal.stage.stage_id)
    )
    with runtime.current().db.transaction() as session:
        stored = session.get(Portal, portal.id)
        assert stored is not None
        result = assign_deal(
            session, stored, event.deal_id, trigger="robot", context=context, rule_id=rule_id
        )
        user = session.get(PortalUser, result.assignment.user_id) if result.assignment.user_id else None
        return {
            "user_id": user.crm_user_id if user is not None else "",
            "decision_id": str(result.decision.id) if result.decision is not None else "",
            "queued": "Y" if result.queued else "N",
        }
