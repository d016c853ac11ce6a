"""Fairness per pool and period, per user: assigned by the algorithm, expected (the sum of their shares at
each decision while they were eligible), target share, deviation; sticky, manual and redistributed apart.
Computed from the decisions' own candidate tables, so it needs nothing but the decision log."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import DistributionDecision, DistributionPool
from .engine import as_dicts

__all__ = ["ALGORITHMIC", "fairness", "fairness_csv", "fairness_rows"]

ALGORITHMIC = ("round_robin", "weighted", "least_loaded", "random", "priority_order")
_MOVED = ("not_taken", "handover", "force")


def fairness_rows(decisions: Iterable[DistributionDecision]) -> list[dict[str, Any]]:
    users: dict[int, dict[str, Any]] = {}
    weights: dict[int, int] = {}
    by_weight = False

    def row(uid: int) -> dict[str, Any]:
        return users.setdefault(
            uid,
            {"user_id": uid, "assigned": 0, "expected": 0.0, "sticky": 0, "manual": 0, "redistributed": 0},
        )

    for decision in decisions:
        candidates = as_dicts((decision.record or {}).get("candidates") or [])
        for c in candidates:
            weights[c["user_id"]] = c["weight"]
            row(c["user_id"])
        chosen = decision.chosen_user_id
        if chosen is None:
            continue
        if decision.reason == "sticky":
            row(chosen)["sticky"] += 1
        elif decision.reason == "manual":
            row(chosen)["manual"] += 1
        elif decision.trigger in _MOVED:
            row(chosen)["redistributed"] += 1
        elif decision.reason in ALGORITHMIC:
            eligible = [c for c in candidates if c["excluded"] is None]
            # The same shares the strategy used: weights for weighted/random, equal otherwise.
            weighted = by_weight = decision.strategy in ("weighted", "random")
            total = sum(c["weight"] for c in eligible) if weighted else len(eligible)
            for c in eligible:
                share = (c["weight"] if weighted else 1) / total if total else 0.0
                row(c["user_id"])["expected"] += share
            row(chosen)["assigned"] += 1
    total_weight = sum(weights.values()) if by_weight else len(weights)
    for uid, r in users.items():
        weight = weights.get(uid, 0) if by_weight else 1
        r["target_share"] = round(weight / total_weight, 4) if total_weight else 0.0
        r["expected"] = round(r["expected"], 3)
        r["deviation"] = round(r["assigned"] - r["expected"], 3)
    return sorted(users.values(), key=lambda r: r["user_id"])


def fairness(
    session: Session, portal_id: int, pool_name: str, start: datetime, end: datetime
) -> dict[str, Any]:
    pool = session.scalar(
        select(DistributionPool).where(
            DistributionPool.portal_id == portal_id, DistributionPool.name == pool_name
        )
    )
    if pool is None:
        return {"pool": pool_name, "from": start, "to": end, "users": [], "decisions": 0}
    decisions = session.scalars(
        select(DistributionDecision)
        .where(
            DistributionDecision.pool_id == pool.id,
            DistributionDecision.at >= start,
            DistributionDecision.at < end,
        )
        .order_by(DistributionDecision.seq)
    ).all()
    rows = fairness_rows(decisions)
    return {
        "pool": pool_name,
        "from": start,
        "to": end,
        "decisions": len(decisions),
        "max_deviation": max((abs(r["deviation"]) for r in rows), default=0.0),
        "users": rows,
    }


def fairness_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    columns = [
        "user_id",
        "assigned",
        "expected",
        "target_share",
        "deviation",
        "sticky",
        "manual",
        "redistributed",
    ]
    writer = csv.DictWriter(out, fieldnames=columns, delimiter=";", extrasaction="ignore")
    writer.writeheader()
    for r in report["users"]:
        writer.writerow(r)
    return out.getvalue()
