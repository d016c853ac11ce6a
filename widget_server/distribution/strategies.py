"""The choice itself: eligible candidates + pool counters → (user, reason). Pure and deterministic, so a
decision can be re-derived from its record and the simulator can replay history.

The seed counts four algorithms but names none; ours are round_robin (по очереди), weighted
(по коэффициенту), least_loaded (по загрузке) and random (weighted, seeded), plus Bitrix24's
priority_order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["STRATEGIES", "Candidate", "Choice", "PoolCounters", "choose", "random_seed"]

STRATEGIES = ("round_robin", "weighted", "least_loaded", "random", "priority_order")

# Expected counts are sums of shares; near-equal deficits are ties, broken by member order, so float
# rounding never decides between two users who deserve the lead equally.
_EPSILON = 1e-9


@dataclass(slots=True)
class Candidate:
    """One eligible member, in the rule's member order."""

    user_id: int
    weight: int = 1
    load: int = 0
    last_assigned: int = 0
    """The pool sequence number of this user's last assignment (0 = never): smaller is idle longer."""


@dataclass(frozen=True)
class PoolCounters:
    last_user_id: int | None = None
    expected: Mapping[int, float] | None = None
    assigned: Mapping[int, int] | None = None


@dataclass(frozen=True)
class Choice:
    user_id: int
    reason: str
    shares: Mapping[int, float]
    """Each eligible user's share of this decision (wᵢ/Σw over the eligible); weighted counters grow by it."""


def random_seed(portal_id: int, deal_id: str, rule_version_id: int | None) -> int:
    digest = hashlib.sha256(f"{portal_id}|{deal_id}|{rule_version_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _shares(candidates: Sequence[Candidate]) -> dict[int, float]:
    total = sum(c.weight for c in candidates)
    if total <= 0:
        return {c.user_id: 1 / len(candidates) for c in candidates}
    return {c.user_id: c.weight / total for c in candidates}


def _round_robin(candidates: Sequence[Candidate], members: Sequence[int], last: int | None) -> Candidate:
    """The first eligible member after the last chosen one, in member order (wrapping)."""
    by_id = {c.user_id: c for c in candidates}
    start = members.index(last) + 1 if last in members else 0
    for offset in range(len(members)):
        user = members[(start + offset) % len(members)]
        if user in by_id:
            return by_id[user]
    return candidates[0]


def _weighted(
    candidates: Sequence[Candidate], shares: Mapping[int, float], counters: PoolCounters
) -> Candidate:
    """Tijdeman's chairman assignment: with σ = 1 − 1/(2n−2), a user may get the lead once their expected
    count (after this decision) exceeds their assigned count by at least 1 − σ, and among those the one
    whose next lead is due soonest, (assigned + σ − expected) / share, gets it. For a fixed set this keeps
    every user within 1 − 1/(2n−2) of n·wᵢ/Σw at every prefix; plain largest-deficit can drift past 1.
    Under churn the expected counts grow only while users are eligible, and the same rule applies."""
    expected = counters.expected or {}
    assigned = counters.assigned or {}
    n = len(candidates)
    if n == 1:
        return candidates[0]
    sigma = 1 - 1 / (2 * n - 2)
    best: Candidate | None = None
    best_due = 0.0
    fallback: Candidate | None = None
    fallback_deficit = 0.0
    for candidate in candidates:
        uid = candidate.user_id
        share = shares[uid]
        deficit = expected.get(uid, 0.0) + share - assigned.get(uid, 0)
        if fallback is None or deficit > fallback_deficit + _EPSILON:
            fallback, fallback_deficit = candidate, deficit
        if share <= 0 or deficit < 1 - sigma - _EPSILON:
            continue
        due = (sigma - deficit) / share
        if best is None or due < best_due - _EPSILON:
            best, best_due = candidate, due
    chosen = best or fallback
    assert chosen is not None
    return chosen


def _least_loaded(candidates: Sequence[Candidate]) -> Candidate:
    return min(candidates, key=lambda c: (c.load, c.last_assigned))


def _random(candidates: Sequence[Candidate], seed: int) -> Candidate:
    total = sum(max(c.weight, 0) for c in candidates)
    if total <= 0:
        return candidates[seed % len(candidates)]
    point = seed % total
    for candidate in candidates:
        point -= max(candidate.weight, 0)
        if point < 0:
            return candidate
    return candidates[-1]


def choose(
    strategy: str,
    candidates: Sequence[Candidate],
    members: Sequence[int],
    counters: PoolCounters,
    *,
    seed: int = 0,
) -> Choice:
    """Pick one of `candidates` (non-empty, eligible, in member order). `members` is the rule's full
    member order, which round-robin cycles through even while some members are away."""
    if not candidates:
        raise ValueError("choose() needs at least one eligible candidate")
    # Round-robin, least-loaded and priority order aim at equal shares; weights only steer weighted/random.
    shares = (
        _shares(candidates)
        if strategy in ("weighted", "random")
        else {c.user_id: 1 / len(candidates) for c in candidates}
    )
    if strategy == "round_robin":
        picked, reason = _round_robin(candidates, members, counters.last_user_id), "round_robin"
    elif strategy == "weighted":
        picked, reason = _weighted(candidates, shares, counters), "weighted"
    elif strategy == "least_loaded":
        picked, reason = _least_loaded(candidates), "least_loaded"
    elif strategy == "random":
        picked, reason = _random(candidates, seed), "random"
    elif strategy == "priority_order":
        picked, reason = candidates[0], "priority_order"
    else:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return Choice(user_id=picked.user_id, reason=reason, shares=shares)
