"""The distribution API: roles, every 422 case (naming the field, nothing written), Idempotency-Key,
assignment with its decision and the queue's 202."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlalchemy import func, select

from widget_server.models import (
    DistributionAssignment,
    DistributionDecision,
    DistributionRule,
    DistributionRuleVersion,
    OperatorShift,
    OperatorStatusEvent,
    Portal,
    PortalUser,
)


@pytest.fixture
def api(make_api, clinic):  # type: ignore[no-untyped-def]
    return {role: make_api(clinic, role) for role in ("viewer", "staff", "supervisor", "admin")}


def _counts(rt) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(model))
            for model in (DistributionRule, DistributionRuleVersion, OperatorShift, OperatorStatusEvent)
        )


def _rule(members, **extra):  # type: ignore[no-untyped-def]
    return {"name": "Первичный приём", "members": members, **extra}


def test_rule_lifecycle_versions_and_roles(api, operators, rt):
    body = _rule([{"user_id": operators[0], "weight": 40}, {"user_id": operators[1], "weight": 60}],
                 strategy="weighted", match={"pipelines": ["primary"], "stages": ["new"]})  # fmt: skip
    assert api["staff"].post("/api/v1/distribution/rules", json=body).status_code == 403
    created = api["supervisor"].post("/api/v1/distribution/rules", json=body, key="r1")
    assert created.status_code == 201, created.get_json()
    rule = created.get_json()
    assert (rule["version"], rule["pool"], rule["document"]["strategy"]) == (
        1,
        f"rule:{rule['id']}",
        "weighted",
    )
    replay = api["supervisor"].post("/api/v1/distribution/rules", json=body, key="r1")
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.get_json() == rule
    edited = api["supervisor"].put(
        f"/api/v1/distribution/rules/{rule['id']}", json={**body, "take_within_min": 30}
    )
    assert edited.get_json()["version"] == 2 and edited.get_json()["version_id"] != rule["version_id"]
    off = api["admin"].post(f"/api/v1/distribution/rules/{rule['id']}/activate", json={"active": False})
    assert off.get_json()["active"] is False
    assert [r["id"] for r in api["supervisor"].get("/api/v1/distribution/rules").get_json()["rules"]] == [
        rule["id"]
    ]
    assert _counts(rt)[:2] == (1, 2)


@pytest.mark.parametrize(
    ("members", "extra", "field", "reason"),
    [
        ([{"weight": -1}], {}, "members[0].weight", "must be ≥ 0"),
        ([{"weight": 0}, {"weight": 0}], {}, "members", "all weights are zero"),
        ([{"weight": 50}, {"weight": 40}], {"weights_mode": "percent"}, "members", "sum 90, must be 100"),
        ([{}, {}, {"user_id": 999_999}], {}, "members[2].user_id", "unknown user 999999"),
        ([{}, {}, {"user_id": "inactive"}], {}, "members[2].user_id", "is inactive"),
        ([{}, {}, {"user_id": "repeat"}], {}, "members[2].user_id", "listed twice"),
        ([], {}, "members", "no members"),
        ([{}], {"match": {"pipelines": ["nope"]}}, "match.pipelines", "unknown pipeline 'nope'"),
        ([{}], {"match": {"stages": ["nope"]}}, "match.stages", "unknown stage 'nope'"),
        ([{"max_open": 0}], {}, "members[0].max_open", "must be > 0"),
        ([{"max_per_day": -3}], {}, "members[0].max_per_day", "must be > 0"),
        ([{}], {"timezone": "Moscow/Kremlin"}, "timezone", "unknown IANA timezone"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(api, operators, rt, members, extra, field, reason):
    with rt.db.transaction() as s:
        s.get(PortalUser, operators[4]).active = False
    resolved = []
    for n, member in enumerate(members):
        uid = member.get("user_id", operators[n])
        uid = {"inactive": operators[4], "repeat": operators[0]}.get(uid, uid)
        resolved.append({**member, "user_id": uid})
    before = _counts(rt)
    response = api["supervisor"].post("/api/v1/distribution/rules", json=_rule(resolved, **extra))
    assert response.status_code == 422, response.get_json()
    fields = response.get_json()["error"]["fields"]
    assert field in fields and reason in " ".join(fields[field]), fields
    assert _counts(rt) == before


def test_overlapping_shift_is_refused_naming_both(api, operators, rt):
    shift = {
        "user_id": operators[0],
        "kind": "weekly",
        "days": [1, 2, 3, 4, 5],
        "start": "09:00",
        "end": "18:00",
    }
    first = api["supervisor"].post("/api/v1/distribution/shifts", json=shift)
    assert first.status_code == 201, first.get_json()
    before = _counts(rt)
    clash = api["supervisor"].post(
        "/api/v1/distribution/shifts", json={**shift, "days": [5, 6], "start": "17:00", "end": "23:00"}
    )
    assert clash.status_code == 422
    message = clash.get_json()["error"]["fields"]["starts_at"][0]
    assert f"shift {first.get_json()['id']}" in message and "new weekly" in message
    assert _counts(rt) == before
    night = api["supervisor"].post(
        "/api/v1/distribution/shifts",
        json={**shift, "user_id": operators[1], "start": "20:00", "end": "08:00"},
    )
    assert night.status_code == 201
    bad_tz = api["supervisor"].post(
        "/api/v1/distribution/shifts", json={**shift, "user_id": operators[2], "timezone": "Mars/Olympus"}
    )
    assert bad_tz.status_code == 422 and "timezone" in bad_tz.get_json()["error"]["fields"]


def test_assign_returns_decision_or_202_queued_and_replays(api, operators, rt, frozen):
    rule = (
        api["supervisor"]
        .post("/api/v1/distribution/rules", json=_rule([{"user_id": u} for u in operators[:2]]))
        .get_json()
    )
    queued = api["staff"].post("/api/v1/deals/501/assign", json={}, key="a1")
    assert queued.status_code == 202 and queued.get_json()["state"] == "queued"
    assert queued.get_json()["decision"]["reason"] == "queued_nobody_eligible"
    api["supervisor"].post(
        f"/api/v1/distribution/operators/{operators[1]}/status", json={"state": "on_shift"}
    )
    done = api["staff"].post("/api/v1/deals/502/assign", json={"rule_id": rule["id"]})
    assert done.status_code == 200
    decision = done.get_json()["decision"]
    assert decision["chosen_user_id"] == operators[1]
    assert [c["excluded"] for c in decision["candidates"]] == ["off", None]
    again = api["staff"].post("/api/v1/deals/502/assign", json={})
    assert again.get_json()["existing"] is True and again.get_json()["decision"]["id"] == decision["id"]
    assert api["staff"].post("/api/v1/deals/502/assign", json={"force": True}).status_code == 403
    bad = api["supervisor"].post("/api/v1/deals/503/assign", json={"rule_id": 424242})
    assert bad.status_code == 422 and "rule_id" in bad.get_json()["error"]["fields"]
    explanation = api["staff"].get("/api/v1/distribution/decisions?deal_id=502").get_json()["decisions"]
    assert [d["id"] for d in explanation] == [decision["id"]]
    assert api["staff"].get("/api/v1/distribution/decisions").status_code == 403
    board = api["staff"].get("/api/v1/distribution/operators").get_json()
    assert board["queue"] == {}  # Petrova's start drained the first lead
    assert {o["id"]: o["load"] for o in board["operators"]}[operators[1]] == 2
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DistributionAssignment)) == 2
        assert s.scalar(select(func.count()).select_from(DistributionDecision)) == 3


def test_status_rules_for_operators(api, operators, rt):
    before = _counts(rt)
    # An API key carries no CRM user: as staff it may not set anybody's status.
    refused = api["staff"].post(
        f"/api/v1/distribution/operators/{operators[0]}/status", json={"state": "on_shift"}
    )
    assert refused.status_code == 403
    bad = api["supervisor"].post(
        f"/api/v1/distribution/operators/{operators[0]}/status", json={"state": "on_shift", "minutes": 10}
    )
    assert bad.status_code == 422 and "minutes" in bad.get_json()["error"]["fields"]
    assert _counts(rt) == before
    ok = api["supervisor"].post(
        f"/api/v1/distribution/operators/{operators[0]}/status",
        json={"state": "paused", "minutes": 10, "reason": "обед"},
    )
    assert ok.status_code == 200 and ok.get_json()["state"] == "paused"


CLIENT_ID, CLIENT_SECRET = "4b1c5d0e-client-id", "amo-client-secret-0123456789abcdef0123"


def _widget_token(user_id: int) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://clinic.amocrm.ru", "aud": "http://testserver", "jti": f"j-{user_id}-{now}",
        "iat": now, "nbf": now, "exp": now + 1800, "account_id": 31415926, "user_id": user_id,
        "subdomain": "clinic", "client_uuid": CLIENT_ID,
    }  # fmt: skip
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(CLIENT_SECRET))


def test_an_operator_sets_only_their_own_status(rt, monkeypatch, make_portal, client):
    monkeypatch.setattr(
        rt, "settings", rt.settings.with_overrides(amo_client_id=CLIENT_ID, amo_client_secret=CLIENT_SECRET)
    )
    portal = make_portal(slug="amo-clinic", kind="amocrm", external_id="31415926", domain="clinic.amocrm.ru")
    with rt.db.transaction() as s:
        mine = PortalUser(portal_id=portal.id, crm_user_id="7001", name="Иванова Анна", roles=["staff"])
        other = PortalUser(portal_id=portal.id, crm_user_id="7002", name="Петрова Мария", roles=["staff"])
        s.add_all([mine, other])
        s.flush()
        mine_id, other_id = mine.id, other.id
    headers = {"X-Auth-Token": _widget_token(7001)}
    own = client.post(
        f"/api/v1/distribution/operators/{mine_id}/status", json={"state": "on_shift"}, headers=headers
    )
    assert own.status_code == 200, own.get_json()
    foreign = client.post(
        f"/api/v1/distribution/operators/{other_id}/status", json={"state": "off"}, headers=headers
    )
    assert foreign.status_code == 403
    with rt.db.transaction() as s:
        events = s.scalars(select(OperatorStatusEvent)).all()
        assert [(e.user_id, e.state, e.source) for e in events] == [(mine_id, "on_shift", "widget")]
        assert s.get(Portal, portal.id).kind == "amocrm"


def test_report_per_user(api, operators, rt, frozen):
    rule = (
        api["supervisor"]
        .post("/api/v1/distribution/rules", json=_rule([{"user_id": u} for u in operators[:2]]))
        .get_json()
    )
    for user in operators[:2]:
        api["supervisor"].post(f"/api/v1/distribution/operators/{user}/status", json={"state": "on_shift"})
    for n in range(4):
        api["staff"].post(f"/api/v1/deals/{600 + n}/assign", json={})
    query = f"pool={rule['pool']}&from=2026-11-01T00:00:00%2B00:00&to=2026-12-01T00:00:00%2B00:00"
    report = api["supervisor"].get(f"/api/v1/distribution/report?{query}").get_json()
    assert [(u["assigned"], u["expected"], u["deviation"]) for u in report["users"]] == [(2, 2.0, 0.0)] * 2
    csv = api["supervisor"].get(f"/api/v1/distribution/report?{query}&format=csv")
    assert csv.mimetype == "text/csv" and "user_id;assigned;expected" in csv.get_data(as_text=True)
    assert api["staff"].get(f"/api/v1/distribution/report?{query}").status_code == 403


def test_heartbeat_keeps_a_manual_day_alive(api, operators, rt, frozen):
    url = f"/api/v1/distribution/operators/{operators[0]}"
    api["supervisor"].post(f"{url}/status", json={"state": "on_shift"})
    frozen.advance(minutes=25)
    assert api["supervisor"].post(f"{url}/heartbeat", json={}).status_code == 200
    assert api["staff"].post(f"{url}/heartbeat", json={}).status_code == 403
    frozen.advance(minutes=25)  # 50 min after the start, 25 after the heartbeat: still on shift
    board = api["staff"].get("/api/v1/distribution/operators").get_json()["operators"]
    assert {o["id"]: o["status"] for o in board}[operators[0]] == "on_shift"
    frozen.advance(minutes=10)
    board = api["staff"].get("/api/v1/distribution/operators").get_json()["operators"]
    assert {o["id"]: o["status"] for o in board}[operators[0]] == "off"


def test_marking_a_lead_taken_stops_its_redistribution(api, operators, rt, frozen):
    from widget_server.distribution import redistribute_due

    api["supervisor"].post("/api/v1/distribution/rules", json=_rule([{"user_id": u} for u in operators[:2]]))
    for user in operators[:2]:
        api["supervisor"].post(f"/api/v1/distribution/operators/{user}/status", json={"state": "on_shift"})
    assert api["staff"].post("/api/v1/deals/900/assign/taken", json={}).status_code == 404
    api["staff"].post("/api/v1/deals/900/assign", json={})
    assert api["staff"].post("/api/v1/deals/900/assign/taken", json={}).status_code == 403  # not the assignee
    taken = api["supervisor"].post("/api/v1/deals/900/assign/taken", json={})
    assert taken.status_code == 200 and taken.get_json()["state"] == "taken"
    frozen.advance(minutes=20)
    with rt.db.transaction() as s:
        assert (
            redistribute_due(s, s.get(Portal, s.scalar(select(DistributionAssignment.portal_id))))[
                "redistributed"
            ]
            == 0
        )
