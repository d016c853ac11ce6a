"""Redistribution: leads not taken within `take_within_min` move to someone who has not had them (at
most MAX_HOPS times, then they wait with a task for a supervisor); leads of an operator whose shift ended
or who became absent move at once; a person's reassignment in the CRM is recorded as `manual`."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import clock
from ..models import (
    DistributionAssignment,
    DistributionDecision,
    DistributionPool,
    DistributionRule,
    DistributionRuleVersion,
    Portal,
    PortalUser,
)
from .engine import Outcome, apply_outcome
from .mirror import queue_supervisor_alert
from .service import (
    MAX_HOPS,
    _append_decision,
    _decide_into,
    _existing,
    _lock_all_pools,
    _release_load,
    _rule_of,
    lock_pool,
    member_views,
)

__all__ = ["mark_taken", "record_manual", "redistribute_due"]


def redistribute_due(session: Session, portal: Portal, *, now: datetime | None = None) -> dict[str, int]:
    """Leads not taken within `take_within_min` go to someone who has not had them (at most MAX_HOPS
    times, then they wait with a task for a supervisor); leads of an operator whose shift ended or who
    became absent move at once."""
    at = now or clock.now_utc()
    moved = queued = handed = 0
    _lock_all_pools(session, portal.id)
    rows = session.scalars(
        select(DistributionAssignment)
        .where(DistributionAssignment.portal_id == portal.id, DistributionAssignment.state == "assigned")
        .order_by(DistributionAssignment.assigned_at, DistributionAssignment.id)
    ).all()
    for assignment in rows:
        found = _rule_of(session, assignment)
        if found is None:
            continue
        rule, version = found
        doc = version.document
        pool = lock_pool(session, portal.id, rule.pool)
        tz = doc.get("timezone") or portal.timezone
        day = at.astimezone(ZoneInfo(tz)).date().isoformat()
        member = [m for m in doc["members"] if m["user_id"] == assignment.user_id]
        views = member_views(session, portal, member, pool.state or {}, at, day) if member else []
        gone = bool(views) and views[0].status in ("off", "absent", "inactive")
        overdue = assignment.take_by is not None and assignment.take_by <= at
        if not (gone or overdue):
            continue
        exclude = frozenset([*assignment.earlier_user_ids, assignment.user_id or 0])
        if overdue and not gone and assignment.hops >= MAX_HOPS:
            _queue_for_supervisor(session, portal, assignment, rule, version, pool, at)
            queued += 1
            continue
        decision = _decide_into(
            session, portal, assignment, rule, version, trigger="handover" if gone else "not_taken",
            actor="system", at=at, exclude=exclude,
        )  # fmt: skip
        if not gone:
            assignment.hops += 1
        if decision.chosen_user_id is None:
            queued += 1
        elif gone:
            handed += 1
        else:
            moved += 1
    return {"redistributed": moved, "handed_over": handed, "queued": queued}


def _queue_for_supervisor(
    session: Session,
    portal: Portal,
    assignment: DistributionAssignment,
    rule: DistributionRule,
    version: DistributionRuleVersion,
    pool: DistributionPool,
    at: datetime,
) -> None:
    previous = assignment.user_id
    outcome = Outcome(None, "queued_not_taken", [], {})
    decision = _append_decision(
        session, pool, deal_id=assignment.deal_id, version=version, trigger="not_taken",
        strategy=version.document["strategy"], outcome=outcome,
        record={"hops": assignment.hops, "earlier": [*assignment.earlier_user_ids, previous]},
        previous=assignment.decision_id, actor="system", at=at,
    )  # fmt: skip
    pool.state = _release_load(pool.state or {}, previous)
    if previous is not None:
        assignment.earlier_user_ids = [*assignment.earlier_user_ids, previous]
    assignment.user_id = None
    assignment.state = "queued"
    assignment.queued_at = at
    assignment.decision_id = decision.id
    session.flush()
    queue_supervisor_alert(session, portal, assignment, version.document, decision, task=True)


def mark_taken(session: Session, portal_id: int, deal_id: str, *, now: datetime | None = None) -> bool:
    """The operator took the lead (left the trigger stage, or marked in the card): no redistribution."""
    assignment = _existing(session, portal_id, deal_id)
    if assignment is None or assignment.state != "assigned":
        return False
    assignment.state = "taken"
    assignment.taken_at = now or clock.now_utc()
    return True


def record_manual(
    session: Session,
    portal: Portal,
    deal_id: str,
    crm_user_id: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> DistributionDecision | None:
    """A person reassigned the deal in the CRM: recorded as `manual`, counted as load, not as fairness."""
    at = now or clock.now_utc()
    assignment = _existing(session, portal.id, deal_id)
    user = session.scalar(
        select(PortalUser).where(PortalUser.portal_id == portal.id, PortalUser.crm_user_id == crm_user_id)
    )
    if assignment is None or user is None or assignment.user_id == user.id or assignment.pool_id is None:
        return None
    pool = session.get(DistributionPool, assignment.pool_id)
    assert pool is not None
    pool = lock_pool(session, portal.id, pool.name)
    state = _release_load(dict(pool.state or {}), assignment.user_id)
    outcome = Outcome(user.id, "manual", [], {})
    decision = _append_decision(
        session, pool, deal_id=deal_id, version=None, trigger="crm", strategy=None, outcome=outcome,
        record={"from_user_id": assignment.user_id}, previous=assignment.decision_id, actor=actor, at=at,
    )  # fmt: skip
    pool.state = apply_outcome(
        state, outcome, pool.seq, (pool.state or {}).get("day") or at.date().isoformat()
    )
    if assignment.user_id is not None:
        assignment.earlier_user_ids = [*assignment.earlier_user_ids, assignment.user_id]
    assignment.user_id, assignment.state, assignment.decision_id = user.id, "taken", decision.id
    assignment.taken_at = at
    return decision
