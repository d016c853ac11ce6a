"""Fifty leads at once, through the app from threads, on the test database (SQLite: BEGIN IMMEDIATE;
PostgreSQL: the pool row's FOR UPDATE): the counts a serial run would give, one decision per deal, and an
intact, re-derivable chain."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from tests.conftest import Api
from widget_server.distribution.decisions import Mismatch, verify_pools
from widget_server.models import DistributionAssignment, DistributionDecision, OutboxJob

THREADS = 8


@pytest.fixture
def apis(app, make_api, clinic):  # type: ignore[no-untyped-def]
    supervisor = make_api(clinic, "supervisor")
    # One test client per thread: Flask's client keeps per-request state.
    return supervisor, [Api(app.test_client(), supervisor.key) for _ in range(THREADS)]


def _setup(supervisor, operators, strategy, weights):  # type: ignore[no-untyped-def]
    members = [{"user_id": u, "weight": w} for u, w in zip(operators, weights, strict=False)]
    rule = supervisor.post("/api/v1/distribution/rules", json={"name": "Все заявки", "strategy": strategy,
                                                                "members": members})  # fmt: skip
    assert rule.status_code == 201, rule.get_json()
    for member in members:
        status = supervisor.post(
            f"/api/v1/distribution/operators/{member['user_id']}/status", json={"state": "on_shift"}
        )
        assert status.status_code == 200


def _fire(clients, paths):  # type: ignore[no-untyped-def]
    def one(n_path):  # type: ignore[no-untyped-def]
        n, path = n_path
        response = clients[n % THREADS].post(path, json={})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, enumerate(paths)))


def _chain_ok(rt) -> None:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        results = list(verify_pools(s))
    assert not [r for r in results if isinstance(r, Mismatch)], results


@pytest.mark.parametrize(
    ("strategy", "weights", "expected"),
    [("round_robin", [1, 1, 1, 1, 1], [10, 10, 10, 10, 10]), ("weighted", [1, 2, 2], [10, 20, 20])],
)
def test_fifty_simultaneous_leads_split_exactly(rt, apis, operators, frozen, strategy, weights, expected):
    supervisor, clients = apis
    _setup(supervisor, operators, strategy, weights)
    answers = _fire(clients, [f"/api/v1/deals/{7000 + n}/assign" for n in range(50)])
    counts = Counter(a["user_id"] for a in answers)
    assert [counts[u] for u in operators[: len(weights)]] == expected
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DistributionDecision)) == 50
        assert s.scalar(select(func.count(func.distinct(DistributionDecision.deal_id)))) == 50
    _chain_ok(rt)


def test_one_deal_triggered_fifty_times_at_once_is_decided_once(rt, apis, operators, frozen):
    supervisor, clients = apis
    _setup(supervisor, operators, "round_robin", [1, 1, 1])
    answers = _fire(clients, ["/api/v1/deals/8000/assign"] * 50)
    assert len({a["decision"]["id"] for a in answers}) == 1
    assert sum(1 for a in answers if not a["existing"]) == 1
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DistributionAssignment)) == 1
        assert s.scalar(select(func.count()).where(OutboxJob.operation == "set_responsible")) == 1
    _chain_ok(rt)
