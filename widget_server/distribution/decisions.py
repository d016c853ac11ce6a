"""Append-only decisions, hash-chained per pool, and their re-derivation (`verify`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import DistributionDecision, DistributionPool
from .engine import MemberView, as_dicts, decide

__all__ = ["Mismatch", "decision_hash", "rederive", "verify_pools"]


def _canonical(decision: DistributionDecision) -> bytes:
    body = {
        "pool_id": decision.pool_id,
        "seq": decision.seq,
        "deal_id": decision.deal_id,
        "rule_version_id": decision.rule_version_id,
        "trigger": decision.trigger,
        "strategy": decision.strategy,
        "chosen_user_id": decision.chosen_user_id,
        "reason": decision.reason,
        "record": decision.record,
        "previous_decision_id": decision.previous_decision_id,
        "actor": decision.actor,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decision_hash(decision: DistributionDecision) -> str:
    return hashlib.sha256((decision.prev_hash or "").encode() + b"\n" + _canonical(decision)).hexdigest()


def rederive(decision: DistributionDecision) -> tuple[int | None, str]:
    """Run the recorded inputs through the engine again: (chosen, reason)."""
    record: dict[str, Any] = decision.record
    if decision.reason in ("manual", "no_rule", "outside_user", "queued_not_taken"):
        return decision.chosen_user_id, decision.reason  # a person's or configuration's choice, not derived
    candidates = as_dicts(record["candidates"])
    members = [
        MemberView(
            user_id=c["user_id"],
            weight=c["weight"],
            status=c["status"],
            load=c["load"],
            today=c["today"],
            max_open=c["max_open"],
            max_per_day=c["max_per_day"],
        )
        for c in candidates
    ]
    state = {
        "last": record["state_before"].get("last"),
        "idle": record["state_before"].get("idle") or {},
        "expected": {str(c["user_id"]): c["expected"] for c in candidates},
        "assigned": {str(c["user_id"]): c["assigned"] for c in candidates},
    }
    outcome = decide(
        decision.strategy or "round_robin",
        members,
        state,
        window_open=record.get("window_open", True),
        sticky_user_ids=record.get("sticky") or (),
        exclude=frozenset(record.get("exclude") or ()),
        seed=int(record.get("seed") or 0),
    )
    reason = outcome.reason
    if outcome.chosen is None and decision.reason.startswith("queued"):
        reason = decision.reason
    return outcome.chosen, reason


@dataclass(frozen=True)
class Mismatch:
    pool_id: int
    seq: int
    decision_id: int
    problem: str


def verify_pools(session: Session, portal_id: int | None = None) -> Iterator[Mismatch | int]:
    """Yield each pool's first mismatch, or the number of decisions checked when it is sound."""
    pools = select(DistributionPool).order_by(DistributionPool.id)
    if portal_id is not None:
        pools = pools.where(DistributionPool.portal_id == portal_id)
    for pool in session.scalars(pools):
        previous: str | None = None
        checked = 0
        mismatch: Mismatch | None = None
        for decision in session.scalars(
            select(DistributionDecision)
            .where(DistributionDecision.pool_id == pool.id)
            .order_by(DistributionDecision.seq)
        ):
            if decision.prev_hash != previous:
                mismatch = Mismatch(pool.id, decision.seq, decision.id, "chain broken: prev_hash differs")
            elif decision_hash(decision) != decision.hash:
                mismatch = Mismatch(pool.id, decision.seq, decision.id, "content changed: hash differs")
            else:
                chosen, reason = rederive(decision)
                if (chosen, reason) != (decision.chosen_user_id, decision.reason):
                    mismatch = Mismatch(
                        pool.id,
                        decision.seq,
                        decision.id,
                        f"re-derived {chosen} ({reason}), "
                        f"recorded {decision.chosen_user_id} ({decision.reason})",
                    )
            if mismatch is not None:
                break
            previous = decision.hash
            checked += 1
        yield mismatch if mismatch is not None else checked
