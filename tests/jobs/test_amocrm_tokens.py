"""Proactive refresh before expiry and the weekly keep-alive of amoCRM refresh tokens."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import responses

from connectors.types import OAuthToken
from widget_server.jobs.amocrm import refresh_amo_tokens
from widget_server.models import Portal, utcnow
from widget_server.tokens import DbTokenSource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "amocrm" / "oauth"


@pytest.fixture
def amo_rt(rt, monkeypatch):
    monkeypatch.setattr(
        rt,
        "settings",
        rt.settings.with_overrides(amo_client_id="cid", amo_client_secret="secret-0123456789abcdef"),
    )
    return rt


def _portal(make_portal, rt, sub: str, token: OAuthToken, saved_days_ago: float = 0) -> int:
    portal = make_portal(kind="amocrm", slug=f"amo-{sub}", external_id=sub, domain=f"{sub}.amocrm.ru")
    DbTokenSource(rt, portal.id).save(token)
    if saved_days_ago:
        # Rewrite saved_at as if the pair had been obtained earlier.
        stored = DbTokenSource(rt, portal.id).get()
        stamp = (utcnow() - timedelta(days=saved_days_ago)).isoformat()
        with rt.db.transaction() as s:
            s.get(Portal, portal.id).token_ciphertext = rt.cipher.encrypt_token(
                OAuthToken(
                    stored.access_token,
                    stored.refresh_token,
                    stored.expires_at,
                    {**stored.extra, "saved_at": stamp},
                )
            )
    return portal.id


def test_only_tokens_near_expiry_or_a_week_old_are_refreshed(amo_rt, make_portal):
    soon = _portal(make_portal, amo_rt, "soon", OAuthToken("a1", "r-soon", utcnow() + timedelta(minutes=5)))
    fresh = _portal(make_portal, amo_rt, "fresh", OAuthToken("a2", "r-fresh", utcnow() + timedelta(hours=20)))
    old = _portal(
        make_portal,
        amo_rt,
        "old",
        OAuthToken("a3", "r-old", utcnow() + timedelta(hours=20)),
        saved_days_ago=8,
    )
    body = json.loads((FIXTURES / "token__ok.json").read_text())
    with responses.RequestsMock() as mock:
        for sub in ("soon", "old"):
            mock.post(
                f"https://{sub}.amocrm.ru/oauth2/access_token", json={**body, "refresh_token": f"new-{sub}"}
            )
        assert refresh_amo_tokens() == "refreshed 2 failed 0 of 3"
        sent = sorted(dict(parse_qsl(c.request.body))["refresh_token"] for c in mock.calls)
    assert sent == ["r-old", "r-soon"]
    assert DbTokenSource(amo_rt, soon).get().refresh_token == "new-soon"
    assert DbTokenSource(amo_rt, old).get().refresh_token == "new-old"
    assert DbTokenSource(amo_rt, fresh).get().refresh_token == "r-fresh"
    assert refresh_amo_tokens() == "refreshed 0 failed 0 of 3"  # now fresh: nothing to do


def test_a_revoked_grant_marks_the_portal_for_reauth(amo_rt, make_portal):
    portal_id = _portal(make_portal, amo_rt, "gone", OAuthToken("a", "r", utcnow() + timedelta(minutes=1)))
    with responses.RequestsMock() as mock:
        mock.post(
            "https://gone.amocrm.ru/oauth2/access_token",
            status=400,
            json=json.loads((FIXTURES / "token__invalid_grant.json").read_text()),
        )
        assert refresh_amo_tokens() == "refreshed 0 failed 1 of 1"
    with amo_rt.db.transaction() as s:
        assert s.get(Portal, portal_id).status == "needs_reauth"
