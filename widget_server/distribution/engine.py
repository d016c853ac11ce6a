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

__all__ = ["CANDIDATE_COLUMNS", "MemberView", "Outcome", "apply_outcome", "as_dicts", "counters_of", "decide"]


@dataclass(slots=True)
class MemberView:
    """A rule member as seen at the decision: status from shifts and self-service, load and counters."""

    user_id: int
    weight: int
    status: str  # on_shift | paused | off | absent | inactive
    load: int = 0
    today: int = 0
    max_open: int | None = None
    max_per_day: int | None = None
    key: str = ""
    """str(user_id), the pool counters' JSON key; given by hot callers that reuse it."""


@dataclass(frozen=True)
class Outcome:
    chosen: int | None
    reason: str
    candidates: list[list[Any]]
    """Rows in CANDIDATE_COLUMNS order."""
    shares: Mapping[int, float] = field(default_factory=dict)


CANDIDATE_COLUMNS = (
    "user_id",
    "status",
    "weight",
    "load",
    "today",
    "max_open",
    "max_per_day",
    "assigned",
    "expected",
    "excluded",
)
"""The candidate table is stored as rows in this column order: 200 operators per decision make dicts'
repeated keys most of the record."""


def as_dicts(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(CANDIDATE_COLUMNS, row, strict=True)) for row in rows]


def counters_of(state: Mapping[str, Any]) -> PoolCounters:
    return PoolCounters(
        last_user_id=state.get("last"),
        expected={int(k): float(v) for k, v in (state.get("expected") or {}).items()},
        assigned={int(k): int(v) for k, v in (state.get("assigned") or {}).items()},
    )


def decide(
    strategy: str,
    members: Sequence[MemberView],
    state: Mapping[str, Any],
    *,
    window_open: bool = True,
    sticky_user_ids: Sequence[int] = (),
    exclude: frozenset[int] = frozenset(),
    seed: int = 0,
    table: bool = True,
) -> Outcome:
    """`table=False` skips the candidate table (the simulator keeps no record)."""
    idle = state.get("idle") or {}
    all_expected = state.get("expected") or {}
    all_assigned = state.get("assigned") or {}
    expected: dict[int, float] = {}
    assigned: dict[int, int] = {}
    rows: list[list[Any]] = []
    eligible: list[Candidate] = []
    for m in members:
        uid = m.user_id
        key = m.key or str(uid)
        done = int(all_assigned.get(key, 0))
        share = float(all_expected.get(key, 0.0))
        # The order of these checks is the reason recorded: the first one that applies.
        if m.status != "on_shift":
            reason: str | None = m.status
        elif not window_open:
            reason = "outside_window"
        elif uid in exclude:
            reason = "had_it_before"
        elif m.max_open is not None and m.load >= m.max_open:
            reason = "max_open"
        elif m.max_per_day is not None and m.today >= m.max_per_day:
            reason = "max_per_day"
        else:
            reason = None
            expected[uid] = share
            assigned[uid] = done
            eligible.append(Candidate(uid, m.weight, m.load, int(idle.get(key, 0))))
        if table:
            rows.append(
                [uid, m.status, m.weight, m.load, m.today, m.max_open, m.max_per_day, done, share, reason]
            )
    if not eligible:
        return Outcome(None, "outside_window" if not window_open else "nobody_eligible", rows)
    counters = PoolCounters(last_user_id=state.get("last"), expected=expected, assigned=assigned)
    choice = choose(strategy, eligible, [m.user_id for m in members], counters, seed=seed)
    if sticky_user_ids:
        eligible_ids = {c.user_id for c in eligible}
        for sticky in sticky_user_ids:
            if sticky in eligible_ids:
                return Outcome(sticky, "sticky", rows, choice.shares)
    return Outcome(choice.user_id, choice.reason, rows, choice.shares)


def apply_outcome(
    state: dict[str, Any], outcome: Outcome, seq: int, day: str, *, in_place: bool = False
) -> dict[str, Any]:
    """The pool counters after `outcome` (JSON keys are strings): a new dict, so that the ORM sees the
    change, or `state` itself updated when the caller owns it (the simulator)."""
    new = state if in_place else {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}
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
