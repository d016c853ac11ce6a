"""The waiting queue: FIFO per pool, drained oldest first on a start, a resume, a freed cap and by the
periodic sweep; a closed deal frees its operator's cap."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import clock
from ..models import DistributionAssignment, DistributionRule, DistributionRuleVersion, Portal
from .engine import decide
from .service import (
    MAX_HOPS,
    _decide_into,
    _existing,
    _lock_all_pools,
    _release_load,
    _rule_of,
    lock_pool,
    member_views,
)
from .shifts import in_window

__all__ = ["close_assignment", "drain_queue"]


def drain_queue(session: Session, portal: Portal, *, now: datetime | None = None, limit: int = 500) -> int:
    """Assign waiting leads oldest first, per pool; a pool stops at its first lead still nobody can take,
    so a later lead never overtakes an earlier one. Returns how many were assigned."""
    at = now or clock.now_utc()
    assigned = 0
    pools = _lock_all_pools(session, portal.id)
    for pool in pools:
        lock_pool(session, portal.id, pool.name)
        waiting = session.scalars(
            select(DistributionAssignment)
            .where(DistributionAssignment.pool_id == pool.id, DistributionAssignment.state == "queued")
            .order_by(DistributionAssignment.queued_at, DistributionAssignment.id)
            .limit(limit)
        ).all()
        for assignment in waiting:
            found = _rule_of(session, assignment)
            if found is None:
                continue
            rule, version = found
            probe = _probe(session, portal, rule, version, at, assignment)
            if not probe:
                break
            _decide_into(
                session, portal, assignment, rule, version, trigger="queue", actor="system", at=at,
                exclude=frozenset(assignment.earlier_user_ids if assignment.hops >= MAX_HOPS else ()),
            )  # fmt: skip
            assigned += 1
        still = session.scalar(
            select(DistributionAssignment.id).where(
                DistributionAssignment.pool_id == pool.id, DistributionAssignment.state == "queued"
            )
        )
        if still is None and (pool.state or {}).get("queue_alerted"):
            pool.state = {**pool.state, "queue_alerted": False}
    return assigned


def _probe(
    session: Session,
    portal: Portal,
    rule: DistributionRule,
    version: DistributionRuleVersion,
    at: datetime,
    assignment: DistributionAssignment,
) -> bool:
    """Would anybody be eligible now? Checked before deciding so a waiting lead leaves no empty decision."""
    doc = version.document
    pool = lock_pool(session, portal.id, rule.pool)
    tz = doc.get("timezone") or portal.timezone
    day = at.astimezone(ZoneInfo(tz)).date().isoformat()
    views = member_views(session, portal, doc["members"], dict(pool.state or {}), at, day)
    exclude = frozenset(assignment.earlier_user_ids if assignment.hops >= MAX_HOPS else ())
    window_open = in_window(doc.get("window"), at, tz)
    outcome = decide(doc["strategy"], views, pool.state or {}, window_open=window_open, exclude=exclude)
    return outcome.chosen is not None


def close_assignment(session: Session, portal: Portal, deal_id: str, *, now: datetime | None = None) -> bool:
    """The deal was won or lost: its operator's open load drops, which may let a capped operator take the
    next waiting lead."""
    assignment = _existing(session, portal.id, deal_id)
    if assignment is None or assignment.state not in ("assigned", "taken") or assignment.pool_id is None:
        return False
    # The queue drain below locks every pool; taking them all first keeps the order the same as elsewhere.
    pools = {p.id: p for p in _lock_all_pools(session, portal.id)}
    pool = pools[assignment.pool_id]
    pool.state = _release_load(dict(pool.state or {}), assignment.user_id)
    assignment.state = "closed"
    session.flush()
    drain_queue(session, portal, now=now)
    return True
