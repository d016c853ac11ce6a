"""`clinicbridge distribution verify` re-derives every decision and names the first mismatch; the
simulator replays history against the active rules and reproduces the live round-robin and weighted
choices, touching no live row."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select, update

from widget_server.cli import cli
from widget_server.distribution import DealContext, assign_deal, create_rule
from widget_server.distribution.engine import as_dicts
from widget_server.distribution.operators import set_status
from widget_server.distribution.rules import validate_rule
from widget_server.distribution.simulator import load_history, simulate
from widget_server.models import (
    DistributionAssignment,
    DistributionDecision,
    DistributionPool,
    OperatorStatusEvent,
    Portal,
    PortalUser,
)

CTX = DealContext(pipeline_id="primary", stage_id="new")


def _history_of_a_day(rt, clinic, operators, frozen, strategy, weights):  # type: ignore[no-untyped-def]
    """Operators come and go (starts, pauses, ends) while 40 leads arrive; returns the rule document."""
    doc = {
        "name": "Первичный приём",
        "strategy": strategy,
        "match": {"pipelines": ["primary"]},
        "members": [{"user_id": u, "weight": w} for u, w in zip(operators, weights, strict=False)],
    }
    with rt.db.transaction() as s:
        create_rule(s, s.get(Portal, clinic.id), doc, "t")
    frozen.set_local("2026-11-23 09:00")
    plan = {0: (0, "on_shift"), 3: (1, "on_shift"), 7: (2, "on_shift"), 12: (1, "paused"),
            18: (3, "on_shift"), 22: (1, "on_shift"), 27: (0, "off"), 33: (4, "on_shift")}  # fmt: skip
    for n in range(40):
        if n in plan:
            index, state = plan[n]
            with rt.db.transaction() as s:
                set_status(s, s.get(Portal, clinic.id), s.get(PortalUser, operators[index]), state,
                           minutes=30 if state == "paused" else None, source="test", actor="t")  # fmt: skip
        with rt.db.transaction() as s:
            # Everyone on shift is active in the CRM (the heartbeat keeps silence from ending their day).
            for uid in operators:
                row = s.scalar(select(OperatorStatusEvent).where(OperatorStatusEvent.user_id == uid).limit(1))
                if row is not None:
                    from widget_server.distribution.operators import heartbeat

                    heartbeat(s, s.get(Portal, clinic.id), s.get(PortalUser, uid), now=frozen.now)
            assign_deal(s, s.get(Portal, clinic.id), f"d{n}", trigger="api", context=CTX)
        frozen.advance(minutes=2)
    return doc


def test_verify_rederives_every_decision_and_names_a_tampered_one(rt, clinic, operators, frozen):
    _history_of_a_day(rt, clinic, operators, frozen, "weighted", [1, 2, 2, 3, 1])
    result = CliRunner().invoke(cli, ["distribution", "verify"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "40 decisions verified" in result.output
    with rt.db.transaction() as s:
        victim = s.scalar(select(DistributionDecision).where(DistributionDecision.seq == 17))
        others = [
            c
            for c in as_dicts(victim.record["candidates"])
            if c["excluded"] is None and c["user_id"] != victim.chosen_user_id
        ]
        # Rewrite the choice and re-seal the hash, as someone covering their tracks would.
        from widget_server.distribution.decisions import decision_hash

        victim.chosen_user_id = others[0]["user_id"]
        victim.hash = decision_hash(victim)
        victim_id = victim.id
    broken = CliRunner().invoke(cli, ["distribution", "verify"])
    assert broken.exit_code == 1
    assert f"decision {victim_id} (seq 17)" in broken.output and "re-derived" in broken.output
    with rt.db.transaction() as s:
        s.execute(
            update(DistributionDecision).where(DistributionDecision.id == victim_id).values(reason="manual")
        )
    chain = CliRunner().invoke(cli, ["distribution", "verify"])
    assert chain.exit_code == 1 and "hash differs" in chain.output


test_verify_rederives_every_decision_and_names_a_tampered_one.tampers_with_decisions = True  # type: ignore[attr-defined]


def _simulate(rt, clinic, doc):  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        normalised = validate_rule(s, portal, doc)
        from widget_server import clock

        history = load_history(s, portal, 30, clock.now_utc())
    return simulate(history, [normalised])


def _live(rt) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return dict(s.execute(select(DistributionAssignment.deal_id, DistributionAssignment.user_id)).all())


def _fingerprint(rt):  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return (
            s.scalar(select(func.count()).select_from(DistributionDecision)),
            [p.state for p in s.scalars(select(DistributionPool).order_by(DistributionPool.id))],
        )


def test_simulating_the_active_round_robin_reproduces_it(rt, clinic, operators, frozen):
    doc = _history_of_a_day(rt, clinic, operators, frozen, "round_robin", [1] * 5)
    before = _fingerprint(rt)
    result = _simulate(rt, clinic, doc)
    assert result["chosen_by_deal"] == _live(rt)
    assert result["same_as_live"] == result["compared_with_live"] == 40
    assert _fingerprint(rt) == before
    assert _simulate(rt, clinic, doc) == result  # deterministic


def test_simulating_the_active_weighted_reproduces_it_and_a_draft_differs(rt, clinic, operators, frozen):
    doc = _history_of_a_day(rt, clinic, operators, frozen, "weighted", [1, 2, 2, 3, 1])
    result = _simulate(rt, clinic, doc)
    assert result["chosen_by_deal"] == _live(rt)
    pool = result["pools"][0]
    assert pool["max_deviation"] <= 2
    draft = _simulate(rt, clinic, {**doc, "strategy": "priority_order"})
    assert draft["chosen_by_deal"] != result["chosen_by_deal"]
    assert draft["wait_seconds"] == {"p50": 0.0, "p95": 0.0} and draft["queued"] == 0


def test_simulate_endpoint_runs_a_job_for_supervisors(rt, clinic, operators, frozen, make_api, jobs):
    doc = _history_of_a_day(rt, clinic, operators, frozen, "round_robin", [1] * 5)
    supervisor, staff = make_api(clinic, "supervisor"), make_api(clinic, "staff")
    body = {"rules": [doc], "days": 7}
    assert staff.post("/api/v1/distribution/simulate", json=body).status_code == 403
    assert supervisor.post("/api/v1/distribution/simulate", json={**body, "days": 91}).status_code == 422
    bad = supervisor.post(
        "/api/v1/distribution/simulate", json={"rules": [{**doc, "members": [{"user_id": 1_000_000}]}]}
    )
    assert bad.status_code == 422 and "rules[0].members[0].user_id" in bad.get_json()["error"]["fields"]
    started = supervisor.post("/api/v1/distribution/simulate", json=body)
    assert started.status_code == 202
    jobs()
    done = supervisor.get(f"/api/v1/distribution/simulate/{started.get_json()['job_id']}").get_json()
    assert done["state"] == "finished"
    assert done["result"]["same_as_live"] == 40
