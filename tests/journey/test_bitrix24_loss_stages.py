"""Bitrix24 keeps no list of loss reasons (a rule's reason is text for our own deal field), but it takes a
reason only with a failure stage (SEMANTICS "F"): a rule that closes with a reason in any other stage is a
422 naming its loss_reason when saved, and nothing is written; the words themselves are the clinic's own."""

from __future__ import annotations

from widget_server.journey import Catalogue
from widget_server.models import JourneyRule, JourneyRuleVersion

from .conftest import count, make_clinic

# What _catalogue reads from a Bitrix24 portal (Bitrix24Client.failure_stages, tested in tests/bitrix24).
FAILURES = {"0": ["LOSE", "APOLOGY"], "1": ["C1:LOSE"]}


def _rule(name: str, pipeline: str | None, stage: str, reason: str | None = "Дорого") -> dict:
    move = {"type": "move", "pipeline_id": pipeline, "stage_id": stage}
    if reason is not None:
        move["loss_reason"] = reason
    return {
        "name": name,
        "enabled": True,
        "trigger": {"type": "stage_entered", "pipeline_id": "1", "stage_id": "C1:WORK"},
        "actions": [{"type": "note", "text": "Закрыть сделку"}, move],
    }


def test_a_reason_needs_a_failure_stage(rt, make_portal, crm_users, make_api, monkeypatch):  # type: ignore[no-untyped-def]
    from widget_server.http import api_journey

    clinic = make_clinic(make_portal, rt, "b24-loss", "Europe/Moscow")
    users = crm_users(clinic)
    monkeypatch.setattr(
        api_journey,
        "_catalogue",
        lambda portal: Catalogue(users=set(users.values()), failure_stages=FAILURES),
    )
    api = make_api(clinic)
    before = (count(rt, JourneyRule), count(rt, JourneyRuleVersion))
    for pipeline, stage in (("1", "C1:WON"), ("1", "LOSE"), (None, "C1:WORK")):
        refused = api.post("/api/v1/journey/rules", json=_rule("Отказ", pipeline, stage))
        assert refused.status_code == 422, refused.get_json()
        assert refused.get_json()["error"]["fields"] == {
            "actions[1].loss_reason": [
                f"only a failure stage (SEMANTICS F) takes a loss reason in Bitrix24; {stage!r} is not one"
            ]
        }
    assert (count(rt, JourneyRule), count(rt, JourneyRuleVersion)) == before
    # Any words, in any failure stage, of the pipeline named or (none named) of the deal's own.
    for name, pipeline, stage, reason in (
        ("В стационаре", "1", "C1:LOSE", "Выбрали другую клинику"),
        ("Анализ", None, "APOLOGY", "Не дозвонились"),
        ("Без причины", "1", "C1:WON", None),
    ):
        saved = api.post("/api/v1/journey/rules", json=_rule(name, pipeline, stage, reason))
        assert saved.status_code == 201, saved.get_json()
    assert count(rt, JourneyRule) == before[0] + 3
