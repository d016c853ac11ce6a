"""Operators' self-service status (start/end of the working day, pause with auto-resume) as append-only
events, and shift entries with their overlap rule."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import clock
from ..errors import DomainError
from ..models import OperatorShift, OperatorState, OperatorStatusEvent, Portal, PortalUser
from .queue import drain_queue
from .shifts import parse_hhmm

__all__ = ["ShiftInvalid", "add_shift", "heartbeat", "set_status"]


class ShiftInvalid(DomainError):
    code = "validation_failed"


def set_status(
    session: Session,
    portal: Portal,
    user: PortalUser,
    state: str,
    *,
    minutes: int | None = None,
    reason: str | None = None,
    source: str,
    actor: str,
    now: datetime | None = None,
) -> OperatorState:
    """Record the change (who, source, when) and apply it; a start or resume lets the queue move."""
    at = now or clock.now_utc()
    until = at + timedelta(minutes=minutes) if state == "paused" and minutes else None
    session.add(
        OperatorStatusEvent(
            portal_id=portal.id, user_id=user.id, state=state, until=until, reason=reason, source=source,
            actor=actor, at=at,
        )
    )  # fmt: skip
    row = session.scalar(
        select(OperatorState).where(OperatorState.portal_id == portal.id, OperatorState.user_id == user.id)
    )
    if row is None:
        row = OperatorState(portal_id=portal.id, user_id=user.id, state=state)
        session.add(row)
    row.state, row.paused_until, row.reason, row.since, row.last_seen_at = state, until, reason, at, at
    session.flush()
    if state == "on_shift":
        drain_queue(session, portal, now=at)
    return row


def heartbeat(session: Session, portal: Portal, user: PortalUser, *, now: datetime | None = None) -> None:
    row = session.scalar(
        select(OperatorState).where(OperatorState.portal_id == portal.id, OperatorState.user_id == user.id)
    )
    if row is not None:
        row.last_seen_at = now or clock.now_utc()


def _weekly_overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if not set(a.get("days") or ()) & set(b.get("days") or ()):
        return False
    a0, a1, b0, b1 = (
        parse_hhmm(x).hour * 60 + parse_hhmm(x).minute for x in (a["start"], a["end"], b["start"], b["end"])
    )
    a1 = a1 if a1 > a0 else a1 + 1440
    b1 = b1 if b1 > b0 else b1 + 1440
    return a0 < b1 and b0 < a1


def add_shift(
    session: Session,
    portal: Portal,
    user: PortalUser,
    kind: str,
    spec: dict[str, Any],
    *,
    starts_at: datetime | None,
    ends_at: datetime | None,
    actor: str,
) -> OperatorShift:
    if kind in ("entry", "absence"):
        if starts_at is None or ends_at is None or ends_at <= starts_at:
            raise ShiftInvalid("ends_at", "must be after starts_at")
    if kind == "cyclic":
        date.fromisoformat(spec["anchor"])
    others = session.scalars(
        select(OperatorShift).where(OperatorShift.portal_id == portal.id, OperatorShift.user_id == user.id)
    ).all()
    for other in others:
        clash = False
        if kind == "entry" and other.kind == "entry":
            clash = other.starts_at < ends_at and starts_at < other.ends_at  # type: ignore[operator]
        elif kind == "absence" and other.kind == "absence":
            clash = other.starts_at < ends_at and starts_at < other.ends_at  # type: ignore[operator]
        elif kind == "weekly" and other.kind == "weekly":
            clash = _weekly_overlaps(spec, other.spec)
        if clash:
            raise ShiftInvalid(
                "starts_at",
                f"overlaps shift {other.id} of the same user (new {kind} vs {other.kind} {other.id})",
            )
    shift = OperatorShift(
        portal_id=portal.id, user_id=user.id, kind=kind, spec=spec, starts_at=starts_at, ends_at=ends_at,
        created_by=actor,
    )  # fmt: skip
    session.add(shift)
    session.flush()
    return shift
