"""Seed 002's templates arrive with the portal on every path that creates one (amoCRM and Bitrix24 install,
the sandbox CLI, the demo), disabled, and a reinstall or rerun never adds a second copy."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import responses
from click.testing import CliRunner
from sqlalchemy import select

from widget_server.amocrm_install import complete_install
from widget_server.bitrix24_install import record_install
from widget_server.cli import cli
from widget_server.journey.templates import template_rules
from widget_server.models import JourneyRule, Portal

OAUTH = Path(__file__).resolve().parents[1] / "fixtures" / "amocrm" / "oauth"
HOST = "ulybka.amocrm.ru"
ACCOUNT = {"id": 27182818, "name": "Улыбка", "subdomain": "ulybka", "currency": "RUB"}
TEMPLATE_KEYS = sorted(doc["key"] for _, doc in template_rules())


def rules_of(rt, slug: str) -> list[JourneyRule]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        portal_id = s.scalar(select(Portal.id).where(Portal.slug == slug))
        rows = list(s.scalars(select(JourneyRule).where(JourneyRule.portal_id == portal_id)))
        s.expunge_all()
        return rows


def assert_installed_once(rules: list[JourneyRule]) -> None:
    assert sorted(r.key for r in rules) == TEMPLATE_KEYS
    assert max(Counter(r.key for r in rules).values()) == 1
    assert not any(r.enabled for r in rules)
    assert len({r.template for r in rules}) == 15


def test_amocrm_install_and_reinstall(rt, monkeypatch):
    monkeypatch.setattr(
        rt, "settings", rt.settings.with_overrides(amo_client_id="client-1", amo_client_secret="s" * 32)
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(
            f"https://{HOST}/oauth2/access_token", json=json.loads((OAUTH / "token__ok.json").read_text())
        )
        mock.get(f"https://{HOST}/api/v4/account", json=ACCOUNT)
        mock.get(f"https://{HOST}/api/v4/webhooks", json={"_embedded": {"webhooks": []}})
        mock.post(f"https://{HOST}/api/v4/webhooks", json={"id": 3})
        first = complete_install(rt, HOST, "code-1")
        assert_installed_once(rules_of(rt, first.slug))
        again = complete_install(rt, HOST, "code-2")
    assert again.reinstalled and again.portal_id == first.portal_id
    assert_installed_once(rules_of(rt, first.slug))


def test_bitrix24_install_and_reinstall(rt):
    for _ in range(2):
        done = record_install(
            rt, member_id="b24-member-1", domain="ulybka.bitrix24.ru", token=None, application_token=None
        )
        assert_installed_once(rules_of(rt, done.slug))


def test_sandbox_portal_from_the_cli(rt):
    result = CliRunner().invoke(
        cli, ["portal", "create", "--name", "Улыбка", "--slug", "ulybka-cli"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert_installed_once(rules_of(rt, "ulybka-cli"))


def test_demo_portal_and_its_rerun(rt):
    for _ in range(2):
        result = CliRunner().invoke(cli, ["demo", "seed"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        slug = json.loads(result.output)["slug"]
        assert_installed_once(rules_of(rt, slug))


def test_an_edited_template_is_kept_on_reinstall(rt):
    done = record_install(
        rt, member_id="b24-member-2", domain="b.bitrix24.ru", token=None, application_token=None
    )
    with rt.db.transaction() as s:
        rule = s.scalar(
            select(JourneyRule).where(JourneyRule.portal_id == done.portal_id, JourneyRule.key == "welcome")
        )
        rule.name = "Приветствие (наше)"
    record_install(rt, member_id="b24-member-2", domain="b.bitrix24.ru", token=None, application_token=None)
    names = {r.key: r.name for r in rules_of(rt, done.slug)}
    assert names["welcome"] == "Приветствие (наше)" and len(names) == len(TEMPLATE_KEYS)
