"""Replay the last N days (≤ 90) of recorded arrivals and operator status events against a draft rule set,
in memory: no live row is read for update or written. Deterministic: the same history and rules give the
same result. Reports, per pool, each user's share against their target, the maximum deviation, how many
leads waited and for how long (p50/p95), beside what actually happened.

Not simulated: how long operators took to take a lead (the log has no such times), so neither the
redistributions of untaken leads nor the closing of deals; load is the count assigned in the simulation.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import (
    DistributionAssignment,
    DistributionDecision,
    OperatorShift,
    OperatorStatusEvent,
    Portal,
    PortalUser,
)
from .engine import MemberView, apply_outcome, decide
from .report import ALGORITHMIC
from .rules import DealContext, _matches
from .shifts import ShiftSpec, StatusView, effective_status, in_window

__all__ = ["Arrival", "History", "StatusEvent", "load_history", "simulate"]

MAX_DAYS = 90
NO_SILENCE_LIMIT = 10**8


@dataclass(frozen=True)
class Arrival:
    at: datetime
    deal_id: str
    context: DealContext


@dataclass(frozen=True)
class StatusEvent:
    at: datetime
    user_id: int
    state: str
    until: datetime | None = None


@dataclass
class History:
    portal_id: int
    timezone: str
    shift_mode: str
    auto_off_minutes: int
    arrivals: list[Arrival]
    events: list[StatusEvent]
    shifts: dict[int, list[ShiftSpec]]
    active_users: set[int]
    live: dict[int, int] = field(default_factory=dict)
    """What happened: leads per user chosen by the live algorithm in the period."""
    live_by_deal: dict[str, int] = field(default_factory=dict)


def load_history(session: Session, portal: Portal, days: int, now: datetime) -> History:
    """Read the period once (plain SELECTs, no locks)."""
    days = max(1, min(days, MAX_DAYS))
    since = now - timedelta(days=days)
    settings = (portal.settings or {}).get("distribution") or {}
    arrivals = [
        Arrival(a.created_at, a.deal_id, DealContext.from_json(a.context or {}))
        for a in session.scalars(
            select(DistributionAssignment)
            .where(DistributionAssignment.portal_id == portal.id, DistributionAssignment.created_at >= since)
            .order_by(DistributionAssignment.created_at, DistributionAssignment.id)
        )
    ]
    events = [
        StatusEvent(e.at, e.user_id, e.state, e.until)
        for e in session.scalars(
            select(OperatorStatusEvent)
            .where(OperatorStatusEvent.portal_id == portal.id, OperatorStatusEvent.at <= now)
            .order_by(OperatorStatusEvent.at, OperatorStatusEvent.id)
        )
    ]
    shifts: dict[int, list[ShiftSpec]] = {}
    for row in session.scalars(select(OperatorShift).where(OperatorShift.portal_id == portal.id)):
        shifts.setdefault(row.user_id, []).append(ShiftSpec(row.kind, row.spec, row.starts_at, row.ends_at))
    active = set(
        session.scalars(
            select(PortalUser.id).where(PortalUser.portal_id == portal.id, PortalUser.active.is_(True))
        )
    )
    live: dict[int, int] = {}
    live_by_deal: dict[str, int] = {}
    for decision in session.scalars(
        select(DistributionDecision)
        .where(DistributionDecision.portal_id == portal.id, DistributionDecision.at >= since)
        .order_by(DistributionDecision.id)
    ):
        if decision.chosen_user_id is not None and decision.reason in ALGORITHMIC:
            live[decision.chosen_user_id] = live.get(decision.chosen_user_id, 0) + 1
            live_by_deal.setdefault(decision.deal_id, decision.chosen_user_id)
    return History(
        portal_id=portal.id,
        timezone=portal.timezone,
        shift_mode=settings.get("shift_mode", "hybrid"),
        # Heartbeats are not history; a silent operator's day ends in the log by the sweep's `off` event.
        auto_off_minutes=NO_SILENCE_LIMIT,
        arrivals=arrivals,
        events=events,
        shifts=shifts,
        active_users=active,
        live=live,
        live_by_deal=live_by_deal,
    )


class _Statuses:
    """Each user's status as of the replay's clock, with the scheduled interval cached until it ends."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.views: dict[int, StatusView] = {}
        self._cache: dict[int, tuple[datetime, datetime, str]] = {}
        self._snapshots: dict[int, tuple[datetime, dict[int, str]]] = {}

    def apply(self, event: StatusEvent) -> None:
        until = event.until if event.state == "paused" else None
        self.views[event.user_id] = StatusView(event.state, event.at, until, event.at)
        self._cache.pop(event.user_id, None)
        self._snapshots.clear()

    def snapshot(self, group: int, user_ids: Sequence[int], at: datetime) -> dict[int, str]:
        """Statuses of a rule's members at `at`, reused until the first of them can change: between two
        status events most arrivals see the same board."""
        kept = self._snapshots.get(group)
        if kept is not None and at < kept[0]:
            return kept[1]
        board = {uid: self.status(uid, at) for uid in user_ids}
        until = min((self._cache[uid][1] if uid in self._cache else at for uid in user_ids), default=at)
        self._snapshots[group] = (until, board)
        return board

    def status(self, user_id: int, at: datetime) -> str:
        if user_id not in self.history.active_users:
            self._cache[user_id] = (at, datetime.max.replace(tzinfo=at.tzinfo), "inactive")
            return "inactive"
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] <= at < cached[1]:
            return cached[2]
        h = self.history
        view = self.views.get(user_id, StatusView())
        status = effective_status(
            h.shift_mode, h.shifts.get(user_id, ()), view, at, default_tz=h.timezone,
            auto_off_minutes=h.auto_off_minutes,
        )  # fmt: skip
        if h.shift_mode == "manual" and not h.shifts.get(user_id):
            # Without shifts a manual status only changes at an event, a pause's end or the silence limit.
            ends = [view.paused_until] if status == "paused" and view.paused_until else []
            if status == "on_shift" and view.since is not None:
                ends.append(
                    max(view.since, view.last_seen_at or view.since) + timedelta(minutes=h.auto_off_minutes)
                )
            self._cache[user_id] = (at, min(ends) if ends else datetime.max.replace(tzinfo=at.tzinfo), status)
        return status


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def simulate(history: History, rules: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`rules` are normalised rule documents (validate_rule), in priority order."""
    ordered = sorted(enumerate(rules), key=lambda item: (item[1].get("priority", 100), item[0]))
    docs = dict(ordered)
    # Per rule, what does not change between arrivals: member ids, their JSON keys, weights and caps.
    static = {
        index: [(m["user_id"], str(m["user_id"]), m["weight"], m.get("max_open"), m.get("max_per_day"))
                for m in doc["members"]]
        for index, doc in ordered
    }  # fmt: skip
    member_ids = {index: [row[0] for row in rows] for index, rows in static.items()}
    zones = {
        tz: ZoneInfo(tz) for tz in {history.timezone, *(d.get("timezone") or history.timezone for d in rules)}
    }
    pools: dict[str, dict[str, Any]] = {}
    seqs: dict[str, int] = {}
    queues: dict[str, deque[tuple[datetime, int, Arrival, int]]] = {}
    chosen_by_deal: dict[str, int] = {}
    waits: list[float] = []
    queued = unmatched = 0
    statuses = _Statuses(history)
    timeline: list[tuple[datetime, int, int, Any]] = []
    for n, event in enumerate(history.events):
        timeline.append((event.at, 0, n, event))  # status first at equal times, as live
    for n, arrival in enumerate(history.arrivals):
        timeline.append((arrival.at, 1, n, arrival))
    heapq.heapify(timeline)

    def pool_of(index: int, doc: Mapping[str, Any]) -> str:
        return str(doc.get("pool") or f"draft:{index}")

    def attempt(index: int, doc: Mapping[str, Any], arrival: Arrival, at: datetime) -> int | None:
        name = pool_of(index, doc)
        state = pools.setdefault(name, {})
        tz = doc.get("timezone") or history.timezone
        day = at.astimezone(zones[tz]).date().isoformat()
        today = state.get("today", {}) if state.get("day") == day else {}
        opened = state.get("open", {})
        board = statuses.snapshot(index, member_ids[index], at)
        members = [
            MemberView(uid, weight, board[uid], opened.get(key, 0), today.get(key, 0), cap, per_day, key)
            for uid, key, weight, cap, per_day in static[index]
        ]
        outcome = decide(
            doc["strategy"], members, state, window_open=in_window(doc.get("window"), at, tz), table=False
        )
        if outcome.chosen is None:
            return None
        seqs[name] = seqs.get(name, 0) + 1
        pools[name] = apply_outcome(state, outcome, seqs[name], day, in_place=True)
        chosen_by_deal[arrival.deal_id] = outcome.chosen
        return outcome.chosen

    while timeline:
        at, kind, _, item = heapq.heappop(timeline)
        if kind == 0:
            statuses.apply(item)
            if item.state == "on_shift":
                for waiting in queues.values():
                    while waiting:
                        queued_at, index, arrival, _n = waiting[0]
                        if attempt(index, docs[index], arrival, at) is None:
                            break
                        waits.append((at - queued_at).total_seconds())
                        waiting.popleft()
            continue
        arrival = item
        match = next(
            ((i, doc) for i, doc in ordered if _matches(doc.get("match") or {}, arrival.context)), None
        )
        if match is None:
            unmatched += 1
            continue
        index, doc = match
        if attempt(index, doc, arrival, at) is None:
            queued += 1
            queues.setdefault(pool_of(index, doc), deque()).append((at, index, arrival, len(waits)))
        else:
            waits.append(0.0)
    return _summary(history, ordered, pools, queues, chosen_by_deal, waits, queued, unmatched)


def _summary(
    history: History,
    ordered: Sequence[tuple[int, Mapping[str, Any]]],
    pools: Mapping[str, Mapping[str, Any]],
    queues: Mapping[str, deque[Any]],
    chosen_by_deal: Mapping[str, int],
    waits: Sequence[float],
    queued: int,
    unmatched: int,
) -> dict[str, Any]:
    result: dict[str, Any] = {"pools": [], "queued": queued, "unmatched": unmatched}
    for index, doc in ordered:
        name = str(doc.get("pool") or f"draft:{index}")
        state = pools.get(name) or {}
        total_weight = sum(m["weight"] for m in doc["members"]) or 1
        assigned = state.get("assigned") or {}
        expected = state.get("expected") or {}
        total = sum(assigned.values()) or 1
        users = [
            {
                "user_id": m["user_id"],
                "assigned": int(assigned.get(str(m["user_id"]), 0)),
                "share": round(int(assigned.get(str(m["user_id"]), 0)) / total, 4),
                "target_share": round(m["weight"] / total_weight, 4),
                "expected": round(float(expected.get(str(m["user_id"]), 0.0)), 3),
                "live_assigned": history.live.get(m["user_id"], 0),
            }
            for m in doc["members"]
        ]
        result["pools"].append(
            {
                "pool": name,
                "users": users,
                "max_deviation": max((abs(u["assigned"] - u["expected"]) for u in users), default=0.0),
                "still_waiting": len(queues.get(name, [])),
            }
        )
    result["wait_seconds"] = {"p50": _percentile(waits, 0.5), "p95": _percentile(waits, 0.95)}
    result["redistributions"] = None  # not simulated: see the module docstring
    matching = [d for d, u in chosen_by_deal.items() if d in history.live_by_deal]
    result["same_as_live"] = sum(1 for d in matching if history.live_by_deal[d] == chosen_by_deal[d])
    result["compared_with_live"] = len(matching)
    result["chosen_by_deal"] = dict(chosen_by_deal)
    return result
