"""The journey API: rules checked against the portal's CRM (a 422 naming the field and nothing written),
templates installed disabled until mapped, versioned edits that never re-fire the past, the dry run,
firings with their CRM jobs, and idempotent answers."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from widget_server.jobs.journey import sweep_portal
from widget_server.models import JourneyAnswer, JourneyRule, JourneyRuleVersion, OutboxJob, Portal, RuleFiring

from .conftest import count, firings, make_clinic, sync, visit

MSK = ZoneInfo("Europe/Moscow")
PIPELINES = {
    "Первичный приём": ["Новая заявка", "Записан на приём", "Посетил клинику"],
    "Сбор NPS": ["Новая"],
    "Профгигиена": ["Приглашение отправлено"],
}


@pytest.fixture
def clinic(make_portal, rt, crm_users):
    portal = make_clinic(make_portal, rt, "api", "Europe/Moscow")
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        row.settings = {**row.settings, "pipelines": PIPELINES}
    crm_users(portal)
    return portal


@pytest.fixture
def api(make_api, clinic):
    return make_api(clinic, "admin")


def _rule(**changes: object) -> dict:
    rule = {
        "name": "Подтверждение",
        "enabled": True,
        "trigger": {"type": "offset", "anchor": "visit", "days": -1, "at": "10:00"},
        "conditions": {"statuses": ["booked"]},
        "actions": [{"type": "message", "text": "{{ФИО}}, ждём Вас {{дата}} в {{время}}"}],
    }
    rule.update(changes)
    return rule


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"actions": [{"type": "move", "pipeline_id": "Первичный приём", "stage_id": "Нет такого"}]},
            "actions[0].stage_id",
        ),
        (
            {"actions": [{"type": "move", "pipeline_id": "Чужая", "stage_id": "Новая"}]},
            "actions[0].pipeline_id",
        ),
        ({"actions": [{"type": "task", "user_id": "999", "text": "Позвонить"}]}, "actions[0].user_id"),
        ({"actions": [{"type": "message", "text": "Здравствуйте, {{Имя}}"}]}, "actions[0].text"),
        (
            {
                "trigger": {
                    "type": "stage_entered",
                    "pipeline_id": "Первичный приём",
                    "stage_id": "Новая заявка",
                },
                "actions": [{"type": "move", "pipeline_id": "Первичный приём", "stage_id": "Новая заявка"}],
            },
            "actions[0]",
        ),
        ({"trigger": {"type": "offset", "anchor": "visit", "at": "25:00"}}, "trigger.at"),
        (
            {"trigger": {"type": "offset", "anchor": "visit", "at": "10:00"}, "window_hours": 0},
            "window_hours",
        ),
    ],
)
def test_bad_rule_is_422_naming_the_field_and_writes_nothing(api, rt, changes, field):
    before = (count(rt, JourneyRule), count(rt, JourneyRuleVersion))
    response = api.post("/api/v1/journey/rules", json=_rule(**changes))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    assert (count(rt, JourneyRule), count(rt, JourneyRuleVersion)) == before


def test_roles(make_api, clinic):
    staff = make_api(clinic, "staff")
    assert staff.get("/api/v1/journey/rules").status_code == 403
    assert staff.post("/api/v1/journey/rules", json=_rule()).status_code == 403


def test_templates_installed_disabled_until_mapped(api, rt, clinic):
    listed = api.get("/api/v1/journey/templates").get_json()["templates"]
    assert {t["template"] for t in listed} >= {
        "welcome",
        "confirm_d1",
        "nps",
        "hygiene_recall",
        "lost_review",
    }
    assert all(r["rule_id"] is None for t in listed for r in t["rules"])
    installed = api.post("/api/v1/journey/templates", json={}).get_json()["installed"]
    assert installed == sum(len(t["rules"]) for t in listed)
    assert api.post("/api/v1/journey/templates", json={}).get_json()["installed"] == 0
    rules = {r["key"]: r for r in api.get("/api/v1/journey/rules").get_json()["rules"]}
    assert not any(r["enabled"] for r in rules.values())

    # The silence task goes to the administrator: unmapped, the rule cannot be enabled.
    with rt.db.transaction() as s:
        row = s.get(Portal, clinic.id)
        journey = dict(row.settings["journey"])
        journey.pop("roles")
        row.settings = {**row.settings, "journey": journey}
    silence = rules["confirm_d1.silence"]["id"]
    refused = api.patch(f"/api/v1/journey/rules/{silence}", json={"enabled": True})
    assert refused.status_code == 422
    assert "actions[0].role" in refused.get_json()["error"]["fields"]
    with rt.db.transaction() as s:
        assert s.get(JourneyRule, silence).enabled is False


def test_edit_is_a_new_version_and_never_refires_the_past(api, rt, clinic, frozen, jobs):
    frozen.set(datetime(2026, 3, 5, 12, 0, tzinfo=MSK))
    created = api.post("/api/v1/journey/rules", json=_rule())
    assert created.status_code == 201, created.get_json()
    rule_id = created.get_json()["id"]
    sync(
        rt,
        clinic,
        visit(MSK, "E1", "301", datetime(2026, 3, 6, 15, 0, tzinfo=MSK)),
        visit(MSK, "E2", "302", datetime(2026, 3, 10, 15, 0, tzinfo=MSK)),
    )
    jobs()
    # The first evaluation came before the MIS mirror made E1's deal: it waits five minutes for it.
    frozen.set(datetime(2026, 3, 5, 12, 5, tzinfo=MSK))
    preview = api.get(f"/api/v1/journey/rules/{rule_id}/preview?days=7").get_json()["occurrences"]
    assert [(p["would"], p["due_at"][:16]) for p in preview] == [
        ("fire", "2026-03-05T09:05"),  # 05.03 10:00 MSK, waiting for E1's deal: due again at 12:05
        ("fire", "2026-03-09T07:00"),
    ]
    before = count(rt, OutboxJob)
    sweep_portal(clinic.id)
    assert count(rt, OutboxJob) == before + 2  # E1's request and its note

    patched = api.patch(
        f"/api/v1/journey/rules/{rule_id}",
        json={"trigger": {"type": "offset", "anchor": "visit", "days": -1, "at": "11:00"}},
    )
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["version"] == 2
    sweep_portal(clinic.id)
    assert count(rt, OutboxJob) == before + 2  # E1 is history; E2 moves to 09.03 11:00
    states = {
        f.occurrence.split(":")[1]: (f.state, f.planned_at.astimezone(MSK).strftime("%d %H:%M"))
        for f in firings(rt, clinic.id)
    }
    assert sorted(states.values()) == [("fired", "05 10:00"), ("scheduled", "09 11:00")]
    fired = firings(rt, clinic.id, state="fired")[0]
    with rt.db.transaction() as s:
        assert s.get(JourneyRuleVersion, fired.rule_version_id).version == 1

    listed = api.get(f"/api/v1/journey/firings?rule_id={rule_id}&outcome=fired").get_json()["firings"]
    assert [j["operation"] for j in listed[0]["jobs"]] == ["journey_send_message", "add_note"]


def test_failed_crm_job_shows_in_firings(api, rt, clinic, frozen, jobs):
    frozen.set(datetime(2026, 3, 5, 12, 0, tzinfo=MSK))
    rule_id = api.post("/api/v1/journey/rules", json=_rule()).get_json()["id"]
    sync(rt, clinic, visit(MSK, "F1", "401", datetime(2026, 3, 6, 15, 0, tzinfo=MSK)))
    jobs()
    with rt.db.transaction() as s:
        s.execute(
            RuleFiring.__table__.update().values(deal_id="999999")  # a deal the CRM does not have
        )
    frozen.set(datetime(2026, 3, 5, 12, 5, tzinfo=MSK))
    sweep_portal(clinic.id)
    with rt.db.transaction() as s:
        s.execute(
            OutboxJob.__table__.update().where(OutboxJob.origin.like("journey:%")).values(max_attempts=1)
        )
    jobs()
    failed = api.get("/api/v1/journey/firings?outcome=failed").get_json()["firings"]
    assert [f["rule_id"] for f in failed] == [rule_id]
    assert {j["state"] for j in failed[0]["jobs"]} == {"failed"}
    assert failed[0]["jobs"][0]["error"]


def test_answers_are_idempotent_and_checked(make_api, rt, clinic, frozen):
    staff = make_api(clinic, "staff")
    first = staff.post("/api/v1/journey/answers", json={"deal_id": "77", "kind": "nps", "value": 9})
    assert first.status_code == 201, first.get_json()
    again = staff.post("/api/v1/journey/answers", json={"deal_id": "77", "kind": "nps", "value": "9"})
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    for body, field in (
        ({"deal_id": "77", "kind": "nps", "value": 11}, "value"),
        ({"deal_id": "77", "kind": "nps", "value": -1}, "value"),
        ({"deal_id": "77", "kind": "nps", "value": "отлично"}, "value"),
        ({"deal_id": "77", "kind": "mood", "value": "+"}, "kind"),
        ({"deal_id": "77", "kind": "confirmation", "value": "может быть"}, "value"),
    ):
        refused = staff.post("/api/v1/journey/answers", json=body)
        assert refused.status_code == 422, body
        assert field in refused.get_json()["error"]["fields"]
    assert count(rt, JourneyAnswer) == 1
    with rt.db.transaction() as s:
        assert s.scalar(select(JourneyAnswer.value)) == "9"


def test_enabling_a_rule_catches_up_on_known_visits(api, rt, clinic, frozen, jobs):
    frozen.set(datetime(2026, 4, 1, 12, 0, tzinfo=MSK))
    done = {"at": datetime(2026, 4, 1, 12, 0, tzinfo=MSK)}
    sync(
        rt,
        clinic,
        visit(
            MSK,
            "H1",
            "601",
            datetime(2025, 12, 1, 10, 0, tzinfo=MSK),
            status="completed",
            changed_at=done["at"],
        ),
        visit(
            MSK,
            "H2",
            "601",
            datetime(2026, 3, 2, 10, 0, tzinfo=MSK),
            status="completed",
            changed_at=done["at"],
        ),
        visit(
            MSK,
            "H3",
            "602",
            datetime(2025, 1, 10, 10, 0, tzinfo=MSK),
            status="completed",
            changed_at=done["at"],
        ),
    )
    api.post("/api/v1/journey/templates", json={})
    rules = {r["key"]: r["id"] for r in api.get("/api/v1/journey/rules").get_json()["rules"]}
    assert firings(rt, clinic.id) == []
    enabled = api.patch(f"/api/v1/journey/rules/{rules['hygiene_recall.invite']}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.get_json()
    # Only patient 601's latest visit: six months after 02.03 is ahead; 602's was due long ago.
    assert [
        (f.occurrence.split(":")[0], f.planned_at.astimezone(MSK).strftime("%d.%m.%Y %H:%M"))
        for f in firings(rt, clinic.id)
    ] == [("last", "02.09.2026 10:00")]


def test_openapi_lists_the_journey_endpoints(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/journey/rules"])
    assert "patch" in paths["/api/v1/journey/rules/{rule_id}"]
    for path in ("/rules/{rule_id}/preview", "/templates", "/firings", "/answers"):
        assert f"/api/v1/journey{path}" in paths


def test_settings_are_checked_and_merged(api, rt, clinic):
    users = api.get("/api/v1/journey/settings").get_json()["settings"]["roles"]
    for body, field in (
        ({"roles": {"head": "424242"}}, "roles.head"),
        ({"roles": {"cashier": users["head"]}}, "roles.cashier"),
        ({"quiet_hours": {"from": "22:00", "to": "9"}}, "quiet_hours.to"),
        ({"review_links": ["ftp://x"]}, "review_links"),
        ({"answer_fields": {"mood": "x"}}, "answer_fields.mood"),
        ({"colour": "red"}, "colour"),
    ):
        refused = api.put("/api/v1/journey/settings", json=body)
        assert refused.status_code == 422, body
        assert field in refused.get_json()["error"]["fields"]
    saved = api.put("/api/v1/journey/settings", json={"quiet_hours": {"from": "22:00", "to": "08:30"}})
    assert saved.status_code == 200, saved.get_json()
    settings = api.get("/api/v1/journey/settings").get_json()["settings"]
    assert settings["quiet_hours"] == {"from": "22:00", "to": "08:30"} and settings["brand"] == "Улыбка"
