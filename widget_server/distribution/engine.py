"""One decision, pure: the rule's members and what is known about each → the candidate table (with why
each one was excluded), the choice and its reason code, and the pool counters after it.

The live path (`service.assign_deal`), `verify` and the simulator all call `decide`, so a recorded
decision is re-derived by exactly the code that made it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .strategies import Candidate, PoolCounters, choose

__all__ = ["MemberView", "Outcome", "apply_outcome", "counters_of", "decide"]


@dataclass(frozen=True)
class MemberView:
    """A rule member as seen at the decision: status from shifts and self-service, load and counters."""

    user_id: int
    weight: int
    status: str  # on_shift | paused | off | absent | inactive
    load: int = 0
    today: int = 0
    max_open: int | None = None
    max_per_day: int | None = None


@dataclass(frozen=True)
class Outcome:
    chosen: int | None
    reason: str
    candidates: list[dict[str, Any]]
    shares: Mapping[int, float] = field(default_factory=dict)


def counters_of(state: Mapping[str, Any]) -> PoolCounters:
    return PoolCounters(
        last_user_id=state.get("last"),
        expected={int(k): float(v) for k, v in (state.get("expected") or {}).items()},
        assigned={int(k): int(v) for k, v in (state.get("assigned") or {}).items()},
    )


def _excluded(member: MemberView, *, window_open: bool, exclude: frozenset[int]) -> str | None:
    if member.status != "on_shift":
        return member.status
    if not window_open:
        return "outside_window"
    if member.user_id in exclude:
        return "had_it_before"
    if member.max_open is not None and member.load >= member.max_open:
        return "max_open"
    if member.max_per_day is not None and member.today >= member.max_per_day:
        return "max_per_day"
    return None


def decide(
    strategy: str,
    members: Sequence[MemberView],
    state: Mapping[str, Any],
    *,
    window_open: bool = True,
    sticky_user_ids: Sequence[int] = (),
    exclude: frozenset[int] = frozenset(),
    seed: int = 0,
) -> Outcome:
    idle = state.get("idle") or {}
    counters = counters_of(state)
    table: list[dict[str, Any]] = []
    eligible: list[Candidate] = []
    for member in members:
        reason = _excluded(member, window_open=window_open, exclude=exclude)
        uid = member.user_id
        table.append(
            {
                "user_id": uid,
                "status": member.status,
                "weight": member.weight,
                "load": member.load,
                "today": member.today,
                "max_open": member.max_open,
                "max_per_day": member.max_per_day,
                "assigned": (counters.assigned or {}).get(uid, 0),
                "expected": (counters.expected or {}).get(uid, 0.0),
                "excluded": reason,
            }
        )
        if reason is None:
            eligible.append(Candidate(uid, member.weight, member.load, int(idle.get(str(uid), 0))))
    if not eligible:
        return Outcome(None, "outside_window" if not window_open else "nobody_eligible", table)
    eligible_ids = {c.user_id for c in eligible}
    member_order = [m.user_id for m in members]
    choice = choose(strategy, eligible, member_order, counters, seed=seed)
    for sticky in sticky_user_ids:
        if sticky in eligible_ids:
            return Outcome(sticky, "sticky", table, choice.shares)
    return Outcome(choice.user_id, choice.reason, table, choice.shares)


def apply_outcome(state: dict[str, Any], outcome: Outcome, seq: int, day: str) -> dict[str, Any]:
    """The pool counters after `outcome` (a new dict; JSON keys are strings)."""
    new = {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}
    if outcome.chosen is None:
        return new
    if new.get("day") != day:
        new["day"], new["today"] = day, {}
    uid = str(outcome.chosen)
    expected = new.setdefault("expected", {})
    # Sticky and forced leads are the customer's or a person's choice, not the algorithm's: they count
    # as load but do not move the fairness counters.
    if outcome.reason not in ("sticky", "manual", "outside_user"):
        for user, share in outcome.shares.items():
            expected[str(user)] = expected.get(str(user), 0.0) + share
        assigned = new.setdefault("assigned", {})
        assigned[uid] = assigned.get(uid, 0) + 1
        new["last"] = outcome.chosen
    new.setdefault("today", {})[uid] = new.get("today", {}).get(uid, 0) + 1
    new.setdefault("open", {})[uid] = new.get("open", {}).get(uid, 0) + 1
    new.setdefault("idle", {})[uid] = seq
    return new
