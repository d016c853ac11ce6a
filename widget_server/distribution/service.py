"""The one entry point every trigger calls: `assign_deal` (our API, amoCRM DP/webhooks, and the Bitrix24
robot/event handlers). One serialised decision per pool: the decision, the pool counters, the deal's
live assignment and the outbox rows commit in the caller's transaction, under a lock on the pool row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import clock
from ..models import (
    DistributionAssignment,
    DistributionDecision,
    DistributionPool,
    DistributionRule,
    DistributionRuleVersion,
    OperatorShift,
    OperatorState,
    Portal,
    PortalUser,
)
from .decisions import decision_hash
from .engine import CANDIDATE_COLUMNS, MemberView, Outcome, apply_outcome, decide
from .mirror import queue_assignment_mirror, queue_supervisor_alert
from .rules import DealContext, match_rule
from .shifts import ShiftSpec, StatusView, effective_status, in_window
from .strategies import random_seed

__all__ = ["MAX_HOPS", "AssignResult", "assign_deal", "lock_pool", "member_views"]

log = logging.getLogger(__name__)

MAX_HOPS = 2
"""Reassignments for a lead nobody took before it waits in the queue with a task for a supervisor."""


@dataclass(frozen=True)
class AssignResult:
    assignment: DistributionAssignment
    decision: DistributionDecision | None
    existing: bool = False

    @property
    def queued(self) -> bool:
        return self.assignment.state == "queued"


def lock_pool(session: Session, portal_id: int, name: str) -> DistributionPool:
    """The pool row, locked for the rest of the transaction (created on first use)."""
    query = (
        select(DistributionPool)
        .where(DistributionPool.portal_id == portal_id, DistributionPool.name == name)
        .with_for_update()
    )
    pool = session.scalar(query)
    if pool is not None:
        return pool
    try:
        with session.begin_nested():
            session.add(DistributionPool(portal_id=portal_id, name=name, state={}, seq=0))
    except IntegrityError:
        pass  # created concurrently: lock theirs
    pool = session.scalar(query)
    assert pool is not None
    return pool


def _lock_all_pools(session: Session, portal_id: int) -> list[DistributionPool]:
    """Sweeps touch several pools: taking all their locks at once, in id order, keeps two sweeps (or a sweep
    and a queue drain after a status change) from locking two pools in opposite orders."""
    return list(
        session.scalars(
            select(DistributionPool)
            .where(DistributionPool.portal_id == portal_id)
            .order_by(DistributionPool.id)
            .with_for_update()
        )
    )


def _settings(portal: Portal) -> dict[str, Any]:
    return (portal.settings or {}).get("distribution") or {}


def member_views(
    session: Session,
    portal: Portal,
    members: list[dict[str, Any]],
    state: dict[str, Any],
    at: datetime,
    day: str,
) -> list[MemberView]:
    # Plain rows, not ORM objects, and whole-portal reads rather than a few hundred bound ids: both were
    # most of a decision's time.
    active = {
        uid
        for uid, is_active in session.execute(
            select(PortalUser.id, PortalUser.active).where(PortalUser.portal_id == portal.id)
        )
        if is_active
    }
    statuses = {
        row[0]: StatusView(row[1], row[2], row[3], row[4])
        for row in session.execute(
            select(
                OperatorState.user_id,
                OperatorState.state,
                OperatorState.since,
                OperatorState.paused_until,
                OperatorState.last_seen_at,
            ).where(OperatorState.portal_id == portal.id)
        )
    }
    shifts: dict[int, list[ShiftSpec]] = {}
    for row in session.scalars(select(OperatorShift).where(OperatorShift.portal_id == portal.id)):
        shifts.setdefault(row.user_id, []).append(ShiftSpec(row.kind, row.spec, row.starts_at, row.ends_at))
    settings = _settings(portal)
    mode = settings.get("shift_mode", "hybrid")
    auto_off = int(settings.get("auto_off_minutes", 30))
    today = (state.get("today") or {}) if state.get("day") == day else {}
    open_load = state.get("open") or {}
    views = []
    for member in members:
        uid = member["user_id"]
        view = statuses.get(uid) or StatusView()
        status = (
            effective_status(
                mode, shifts.get(uid, ()), view, at, default_tz=portal.timezone, auto_off_minutes=auto_off
            )
            if uid in active
            else "inactive"
        )
        views.append(
            MemberView(
                user_id=uid,
                weight=member["weight"],
                status=status,
                load=int(open_load.get(str(uid), 0)),
                today=int(today.get(str(uid), 0)),
                max_open=member.get("max_open"),
                max_per_day=member.get("max_per_day"),
            )
        )
    return views


def _sticky_ids(session: Session, portal_id: int, crm_ids: tuple[str, ...]) -> list[int]:
    if not crm_ids:
        return []
    rows = dict(
        session.execute(
            select(PortalUser.crm_user_id, PortalUser.id).where(
                PortalUser.portal_id == portal_id, PortalUser.crm_user_id.in_(crm_ids)
            )
        ).all()
    )
    return [rows[c] for c in crm_ids if c in rows]


def _existing(session: Session, portal_id: int, deal_id: str) -> DistributionAssignment | None:
    return session.scalar(
        select(DistributionAssignment).where(
            DistributionAssignment.portal_id == portal_id, DistributionAssignment.deal_id == deal_id
        )
    )


def _append_decision(
    session: Session,
    pool: DistributionPool,
    *,
    deal_id: str,
    version: DistributionRuleVersion | None,
    trigger: str,
    strategy: str | None,
    outcome: Outcome,
    record: dict[str, Any],
    previous: int | None,
    actor: str,
    at: datetime,
) -> DistributionDecision:
    pool.seq += 1
    decision = DistributionDecision(
        portal_id=pool.portal_id,
        pool_id=pool.id,
        seq=pool.seq,
        deal_id=deal_id,
        rule_version_id=version.id if version else None,
        trigger=trigger,
        strategy=strategy,
        chosen_user_id=outcome.chosen,
        reason=outcome.reason,
        record=record,
        previous_decision_id=previous,
        actor=actor,
        at=at,
        prev_hash=pool.last_hash,
        hash="",
    )
    decision.hash = decision_hash(decision)
    pool.last_hash = decision.hash
    session.add(decision)
    session.flush()
    return decision


def _release_load(state: dict[str, Any], user_id: int | None) -> dict[str, Any]:
    if user_id is None:
        return state
    new = {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}
    opened = new.setdefault("open", {})
    opened[str(user_id)] = max(0, int(opened.get(str(user_id), 0)) - 1)
    return new


def _decide_into(
    session: Session,
    portal: Portal,
    assignment: DistributionAssignment,
    rule: DistributionRule,
    version: DistributionRuleVersion,
    *,
    trigger: str,
    actor: str,
    at: datetime,
    exclude: frozenset[int] = frozenset(),
    queue_on_none: bool = True,
    pool: DistributionPool | None = None,
) -> DistributionDecision:
    """Decide for `assignment` under its pool's lock and update everything that depends on it."""
    doc = version.document
    pool = pool or lock_pool(session, portal.id, rule.pool)
    tz = doc.get("timezone") or portal.timezone
    day = at.astimezone(ZoneInfo(tz)).date().isoformat()
    state = dict(pool.state or {})
    ctx = DealContext.from_json(assignment.context or {})
    views = member_views(session, portal, doc["members"], state, at, day)
    window_open = in_window(doc.get("window"), at, tz)
    sticky = (
        []
        if trigger in ("not_taken", "handover", "force")
        else _sticky_ids(session, portal.id, ctx.sticky_crm_user_ids)
    )
    seed = random_seed(portal.id, assignment.deal_id, version.id)
    outcome = decide(
        doc["strategy"],
        views,
        state,
        window_open=window_open,
        sticky_user_ids=sticky,
        exclude=exclude,
        seed=seed,
    )
    if outcome.chosen is None and not window_open and doc.get("outside_hours") == "user":
        outcome = Outcome(int(doc["outside_user_id"]), "outside_user", outcome.candidates, {})
    if outcome.chosen is None:
        outcome = Outcome(None, f"queued_{outcome.reason}", outcome.candidates, {})
    member_ids = {m["user_id"] for m in doc["members"]}
    record = {
        "rule": {"id": rule.id, "version": version.version, "name": rule.name},
        "pool": pool.name,
        "window_open": window_open,
        "sticky": sticky,
        "exclude": sorted(exclude),
        "seed": seed,
        "day": day,
        "state_before": {
            "last": state.get("last"),
            "idle": {k: v for k, v in (state.get("idle") or {}).items() if int(k) in member_ids},
        },
        "columns": list(CANDIDATE_COLUMNS),
        "candidates": outcome.candidates,
    }
    previous_user = assignment.user_id if assignment.state in ("assigned", "taken") else None
    if outcome.chosen is not None and previous_user is not None:
        state = _release_load(state, previous_user)
    decision = _append_decision(
        session,
        pool,
        deal_id=assignment.deal_id,
        version=version,
        trigger=trigger,
        strategy=doc["strategy"],
        outcome=outcome,
        record=record,
        previous=assignment.decision_id,
        actor=actor,
        at=at,
    )
    pool.state = apply_outcome(state, outcome, pool.seq, day)
    assignment.pool_id = pool.id
    assignment.rule_version_id = version.id
    assignment.decision_id = decision.id
    if outcome.chosen is not None:
        if previous_user is not None and previous_user != outcome.chosen:
            assignment.earlier_user_ids = [*assignment.earlier_user_ids, previous_user]
        assignment.user_id = outcome.chosen
        assignment.state = "assigned"
        assignment.assigned_at = at
        assignment.take_by = at + timedelta(minutes=int(doc.get("take_within_min", 15)))
        assignment.queued_at = None
        session.flush()
        queue_assignment_mirror(session, portal, assignment, decision, doc, outcome)
    elif queue_on_none:
        if previous_user is not None:
            assignment.earlier_user_ids = [*assignment.earlier_user_ids, previous_user]
            pool.state = _release_load(pool.state, previous_user)
        assignment.user_id = None
        assignment.state = "queued"
        assignment.queued_at = assignment.queued_at or at
        session.flush()
        if not (pool.state or {}).get("queue_alerted"):
            queue_supervisor_alert(session, portal, assignment, doc, decision)
            pool.state = {**pool.state, "queue_alerted": True}
    return decision


def assign_deal(
    session: Session,
    portal: Portal,
    deal_id: str,
    *,
    trigger: str,
    context: DealContext | None = None,
    rule_id: int | None = None,
    force: bool = False,
    actor: str = "system",
    now: datetime | None = None,
) -> AssignResult:
    """Assign `deal_id` (or queue it). A repeat for a deal that already has a live assignment returns it
    untouched; only `force` (a supervisor's) reassigns, excluding the current assignee, as a new decision
    linked to the previous one. Run it inside the caller's transaction."""
    at = now or clock.now_utc()
    context = context or DealContext()
    existing = _existing(session, portal.id, deal_id)
    # A deal no rule matched before (another stage, no rule yet) may match now; a live one stays as is.
    if existing is not None and existing.state != "unmatched" and not force:
        decision = session.get(DistributionDecision, existing.decision_id) if existing.decision_id else None
        return AssignResult(existing, decision, existing=True)
    found = match_rule(session, portal.id, context, rule_id)
    if found is None:
        if existing is not None:
            decision = (
                session.get(DistributionDecision, existing.decision_id) if existing.decision_id else None
            )
            return AssignResult(existing, decision, existing=True)
        return _unmatched(session, portal, deal_id, context, trigger, actor, at)
    rule, version = found
    # Lock first, then look again: a concurrent trigger for the same deal may have won meanwhile.
    pool = lock_pool(session, portal.id, rule.pool)
    existing = _existing(session, portal.id, deal_id)
    if existing is not None and existing.state != "unmatched" and not force:
        decision = session.get(DistributionDecision, existing.decision_id) if existing.decision_id else None
        return AssignResult(existing, decision, existing=True)
    if existing is not None and existing.state == "unmatched":
        assignment = existing
        assignment.trigger, assignment.context, assignment.state = trigger, context.as_json(), "queued"
        exclude: frozenset[int] = frozenset()
    elif existing is None:
        assignment = DistributionAssignment(
            portal_id=portal.id, deal_id=deal_id, state="queued", trigger=trigger, context=context.as_json(),
            hops=0, earlier_user_ids=[],
        )  # fmt: skip
        session.add(assignment)
        session.flush()
        exclude = frozenset()
    else:
        assignment = existing
        assignment.trigger = trigger
        exclude = frozenset({assignment.user_id}) if assignment.user_id is not None else frozenset()
    decision = _decide_into(
        session, portal, assignment, rule, version, trigger="force" if force else trigger, actor=actor, at=at,
        exclude=exclude, pool=pool,
    )  # fmt: skip
    return AssignResult(assignment, decision)


def _unmatched(
    session: Session,
    portal: Portal,
    deal_id: str,
    context: DealContext,
    trigger: str,
    actor: str,
    at: datetime,
) -> AssignResult:
    """No rule matches: recorded (so the card can say why) and nothing else done."""
    pool = lock_pool(session, portal.id, "__unmatched__")
    assignment = DistributionAssignment(
        portal_id=portal.id, deal_id=deal_id, state="unmatched", trigger=trigger, context=context.as_json(),
        hops=0, earlier_user_ids=[], pool_id=pool.id,
    )  # fmt: skip
    session.add(assignment)
    decision = _append_decision(
        session, pool, deal_id=deal_id, version=None, trigger=trigger, strategy=None,
        outcome=Outcome(None, "no_rule", []), record={"context": context.as_json()}, previous=None,
        actor=actor, at=at,
    )  # fmt: skip
    assignment.decision_id = decision.id
    session.flush()
    return AssignResult(assignment, decision)


def _rule_of(
    session: Session, assignment: DistributionAssignment
) -> tuple[DistributionRule, DistributionRuleVersion] | None:
    if assignment.rule_version_id is None:
        return None
    old = session.get(DistributionRuleVersion, assignment.rule_version_id)
    if old is None:
        return None
    rule = session.get(DistributionRule, old.rule_id)
    if rule is None or not rule.active:
        return None
    # Reassignments follow the rule as it is now.
    found = match_rule(session, assignment.portal_id, DealContext(), rule.id)
    return found
