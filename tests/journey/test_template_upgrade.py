"""Portals installed before the journey follow-ups keep the old invalid_phone, confirm_d1.request and
complex_treatment rules: a rule still exactly as installed becomes today's template (a new version, the
old one kept); a rule the clinic edited is left alone and listed; running again changes nothing."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

from widget_server.cli import cli
from widget_server.journey import Catalogue, install_templates, update_rule, validate_rule
from widget_server.journey.rules import current_version
from widget_server.journey.templates import PREVIOUS_TEMPLATES, template_rules
from widget_server.models import JourneyRule, JourneyRuleVersion, Portal

from .conftest import make_clinic

LATEST = {doc["key"]: doc for _, doc in template_rules()}


def _as_installed_before(rt, portal_id: int, edited: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """The portal's rules as an earlier release installed them (its template documents, version 1); the
    `edited` one then changed by the clinic, as a PATCH does."""
    with rt.db.transaction() as s:
        portal = s.get(Portal, portal_id)
        install_templates(s, portal, "test")
        for key, (old, *_) in PREVIOUS_TEMPLATES.items():
            rule = s.scalar(
                select(JourneyRule).where(JourneyRule.portal_id == portal_id, JourneyRule.key == key)
            )
            current_version(s, rule).document = validate_rule(s, portal, old, Catalogue(), strict=False)
            if key == edited:
                update_rule(s, portal, rule, {"window_hours": 3}, "admin", Catalogue())


def _documents(rt, portal_id: int) -> dict[str, tuple[int, dict, int]]:  # type: ignore[no-untyped-def]
    """key → (version, current document, number of versions kept)."""
    with rt.db.transaction() as s:
        found = {}
        for rule in s.scalars(select(JourneyRule).where(JourneyRule.portal_id == portal_id)):
            kept = s.scalar(select(func.count()).where(JourneyRuleVersion.rule_id == rule.id))
            found[rule.key] = (rule.version, current_version(s, rule).document, kept)
        return found


def _latest(rt, portal_id: int, key: str) -> dict:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return validate_rule(s, s.get(Portal, portal_id), LATEST[key], Catalogue(), strict=False)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_unedited_rules_upgrade_and_edited_ones_are_listed(rt, make_portal):
    clinic = make_clinic(make_portal, rt, "upgrade", "Europe/Moscow")
    _as_installed_before(rt, clinic.id, edited="complex_treatment")
    before = _documents(rt, clinic.id)
    assert before["invalid_phone"][1]["trigger"]["type"] == "field_set"

    dry = invoke("journey", "upgrade-templates", "--portal", "upgrade", "--dry-run")
    assert dry.strip() == (
        "upgrade: would upgrade confirm_d1.request, invalid_phone; edited, left alone: complex_treatment"
    )
    assert _documents(rt, clinic.id) == before

    done = invoke("journey", "upgrade-templates", "--portal", "upgrade")
    assert "upgraded confirm_d1.request, invalid_phone; edited, left alone: complex_treatment" in done
    after = _documents(rt, clinic.id)
    for key in ("invalid_phone", "confirm_d1.request"):
        version, document, kept = after[key]
        assert (version, kept) == (before[key][0] + 1, before[key][2] + 1)  # the old version is history
        assert document == _latest(rt, clinic.id, key)
    assert after["invalid_phone"][1]["trigger"] == {"type": "phone_flagged"}
    assert after["confirm_d1.request"][1]["conditions"]["confirm_mode"] == "message"
    assert after["complex_treatment"] == before["complex_treatment"]  # the clinic's own edit stands
    assert {k: v for k, v in after.items() if k not in PREVIOUS_TEMPLATES} == {
        k: v for k, v in before.items() if k not in PREVIOUS_TEMPLATES
    }

    again = invoke("journey", "upgrade-templates", "--portal", "upgrade")
    assert "upgraded nothing; edited, left alone: complex_treatment" in again
    assert _documents(rt, clinic.id) == after


def test_a_reinstall_upgrades_and_every_portal_is_covered(rt, make_portal):
    first = make_clinic(make_portal, rt, "old-a", "Europe/Moscow")
    second = make_clinic(make_portal, rt, "old-b", "Asia/Vladivostok")
    _as_installed_before(rt, first.id)
    _as_installed_before(rt, second.id)
    with rt.db.transaction() as s:
        assert install_templates(s, s.get(Portal, first.id), "install") == 0  # a reinstall adds nothing …
    assert _documents(rt, first.id)["complex_treatment"][1] == _latest(rt, first.id, "complex_treatment")
    output = invoke("journey", "upgrade-templates")  # … and every portal's turn comes without --portal
    assert "old-a: upgraded nothing" in output
    assert "old-b: upgraded complex_treatment, confirm_d1.request, invalid_phone" in output
    computed = _documents(rt, second.id)["complex_treatment"][1]["actions"][0]
    assert computed["computed_fields"] == {"Не был более года": "not_seen_for_a_year"}
    assert "Не был более года" not in computed["copy_fields"]


def test_an_upgraded_confirm_request_leaves_a_call_task_portal_nothing_to_skip(
    rt, make_portal, crm_users, frozen, jobs
):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from widget_server.journey.templates import upgrade_templates

    from .conftest import firings, sync, visit

    msk = ZoneInfo("Europe/Moscow")
    clinic = make_clinic(make_portal, rt, "old-calls", "Europe/Moscow")
    crm_users(clinic)
    _as_installed_before(rt, clinic.id)
    with rt.db.transaction() as s:
        row = s.get(Portal, clinic.id)
        for key in ("confirm_d1.request", "confirm_d1.call"):
            rule = s.scalar(
                select(JourneyRule).where(JourneyRule.portal_id == clinic.id, JourneyRule.key == key)
            )
            update_rule(s, row, rule, {"enabled": True}, "test", Catalogue())  # not a reinstall: no upgrade
        row.settings = {
            **row.settings,
            "journey": {**row.settings["journey"], "confirm_d1_mode": "call_task"},
        }
    frozen.set(datetime(2026, 3, 5, 12, 0, tzinfo=msk))
    sync(rt, clinic, visit(msk, "U1", "701", datetime(2026, 3, 12, 10, 0, tzinfo=msk)))
    jobs()
    with rt.db.transaction() as s:
        ids = dict(
            s.execute(select(JourneyRule.key, JourneyRule.id).where(JourneyRule.portal_id == clinic.id)).all()
        )
    # The old request rule has no mode condition: planned beside the call task, it would be skipped.
    assert [f.state for f in firings(rt, clinic.id, rule_id=ids["confirm_d1.request"])] == ["scheduled"]
    with rt.db.transaction() as s:
        assert upgrade_templates(s, s.get(Portal, clinic.id), "test").upgraded == [
            "complex_treatment", "confirm_d1.request", "invalid_phone"
        ]  # fmt: skip
    assert firings(rt, clinic.id, rule_id=ids["confirm_d1.request"]) == []
    assert [f.state for f in firings(rt, clinic.id, rule_id=ids["confirm_d1.call"])] == ["scheduled"]
