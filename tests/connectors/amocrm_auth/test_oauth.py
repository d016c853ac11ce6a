"""amoCRM OAuth: referer allowlist, code exchange and refresh at the account host, revoked grants."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import responses

from connectors.amocrm.oauth import AmoOAuth, consent_url, disconnect_signature_valid, validate_referer
from connectors.errors import ReauthRequired, Rejected, RetryLater
from connectors.types import OAuthToken

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "amocrm" / "oauth"
HOST = "clinic.amocrm.ru"
TOKEN_URL = f"https://{HOST}/oauth2/access_token"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def oauth() -> AmoOAuth:
    return AmoOAuth("client-id", "client-secret", "https://bridge.example.ru/install/amocrm/callback")


@pytest.mark.parametrize("referer", ["clinic.amocrm.ru", "a-b.kommo.com", "CLINIC.AMOCRM.COM"])
def test_account_hosts_are_accepted(referer):
    assert validate_referer(referer) == referer.lower()


@pytest.mark.parametrize(
    "referer",
    ["www.evil.ru", "clinic.amocrm.ru.evil.ru", "evil.ru/clinic.amocrm.ru", "", None, "a.b.amocrm.ru"],
)
def test_foreign_hosts_are_refused_before_any_secret_leaves(referer):
    with pytest.raises(Rejected) as caught:
        validate_referer(referer)
    assert caught.value.path == "referer"


def test_consent_url_uses_the_brand_host_and_state():
    url = consent_url("client-id", "st4te", brand="kommo.com")
    assert url.startswith("https://www.kommo.com/oauth?")
    assert "state=st4te" in url and "client_id=client-id" in url and "mode=post_message" in url


@responses.activate
def test_code_exchange_posts_to_the_account_host(oauth):
    responses.post(TOKEN_URL, json=fixture("token__ok.json"))
    token = oauth.exchange_code(HOST, "auth-code-1")
    assert token.refresh_token == "def50200refresh-token-1"
    assert token.expires_at is not None and token.extra["token_type"] == "Bearer"
    sent = dict(parse_qsl(responses.calls[0].request.body))
    assert sent["grant_type"] == "authorization_code" and sent["code"] == "auth-code-1"
    assert sent["client_secret"] == "client-secret"
    assert sent["redirect_uri"] == "https://bridge.example.ru/install/amocrm/callback"


@responses.activate
def test_refresh_sends_redirect_uri_as_amo_requires(oauth):
    responses.post(TOKEN_URL, json={**fixture("token__ok.json"), "refresh_token": "def50200refresh-token-2"})
    old = OAuthToken("old-access", "def50200refresh-token-1", None)
    new = oauth.refresh(HOST, old)
    sent = dict(parse_qsl(responses.calls[0].request.body))
    assert sent["grant_type"] == "refresh_token" and sent["refresh_token"] == "def50200refresh-token-1"
    assert sent["redirect_uri"] == "https://bridge.example.ru/install/amocrm/callback"
    assert new.refresh_token == "def50200refresh-token-2"


@responses.activate
def test_a_revoked_refresh_token_means_reauth(oauth):
    responses.post(TOKEN_URL, json=fixture("token__invalid_grant.json"), status=400)
    with pytest.raises(ReauthRequired):
        oauth.refresh(HOST, OAuthToken("a", "used-refresh-token", None))


@responses.activate
def test_an_unreachable_token_endpoint_is_transient(oauth):
    responses.post(TOKEN_URL, status=502)
    with pytest.raises(RetryLater):
        oauth.refresh(HOST, OAuthToken("a", "r", None))


def test_refresh_without_a_refresh_token_needs_reauth(oauth):
    with pytest.raises(ReauthRequired):
        oauth.refresh(HOST, OAuthToken("a", None, None))


def test_disconnect_signature():
    signature = hmac.new(b"client-secret", b"client-id|31415926", hashlib.sha256).hexdigest()
    assert disconnect_signature_valid("client-id", "client-secret", "31415926", signature)
    assert disconnect_signature_valid("client-id", "client-secret", "31415926", signature.upper())
    assert not disconnect_signature_valid("client-id", "client-secret", "27182818", signature)
    assert not disconnect_signature_valid("client-id", "client-secret", "31415926", "")


@responses.activate
def test_a_token_answer_without_access_token_is_rejected(oauth):
    responses.post(TOKEN_URL, json={"token_type": "Bearer"})
    with pytest.raises(Rejected, match="no access_token"):
        oauth.exchange_code(HOST, "code")


# --- account moved (§1.2) ---------------------------------------------------------------------------------

NEW_HOST = "newclinic.amocrm.ru"
SUBDOMAIN_URL = "https://api-a.amocrm.ru/oauth2/account/current/subdomain"


def _jwt(claims: dict) -> str:
    import base64

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


MOVED = OAuthToken(_jwt({"account_id": 29842716, "api_domain": "api-a.amocrm.ru"}), "refresh-1", None)


@pytest.mark.parametrize(
    "old_host_answer",
    [
        {"status": 404, "body": "<html>Not Found</html>", "content_type": "text/html"},
        {"status": 401, "json": {"title": "Unauthorized", "type": "about:blank", "status": 401}},
    ],
)
@responses.activate
def test_a_moved_account_is_found_through_api_domain_and_refreshed_at_its_new_host(oauth, old_host_answer):
    responses.post(TOKEN_URL, **old_host_answer)
    responses.get(SUBDOMAIN_URL, json=fixture("account_current_subdomain.json"))
    responses.post(f"https://{NEW_HOST}/oauth2/access_token", json={**fixture("token__ok.json")})
    heard: list[str] = []

    new = oauth.refresh_following_moves(HOST, MOVED, on_moved=heard.append)

    assert heard == [NEW_HOST]
    assert new.extra["account_host"] == NEW_HOST
    assert new.access_token == fixture("token__ok.json")["access_token"]
    lookup = responses.calls[1].request
    assert lookup.headers["X-Refresh-Token"] == "refresh-1"
    assert "Authorization" not in lookup.headers


@responses.activate
def test_a_revoked_grant_is_not_mistaken_for_a_move(oauth):
    responses.post(TOKEN_URL, json=fixture("token__invalid_grant.json"), status=400)
    with pytest.raises(ReauthRequired):
        oauth.refresh_following_moves(HOST, MOVED)
    assert len(responses.calls) == 1  # nobody was asked where the account went


@pytest.mark.parametrize(
    "token",
    [
        OAuthToken("not-a-jwt", "refresh-1", None),
        # An api_domain outside amo's hosts must never receive the refresh token.
        OAuthToken(_jwt({"api_domain": "evil.example.com"}), "refresh-1", None),
    ],
)
@responses.activate
def test_without_a_trustworthy_api_domain_a_vanished_host_means_reauth(oauth, token):
    responses.post(TOKEN_URL, status=404)
    with pytest.raises(ReauthRequired):
        oauth.refresh_following_moves(HOST, token)
    assert [c.request.url for c in responses.calls] == [TOKEN_URL]


@responses.activate
def test_a_foreign_host_in_the_subdomain_answer_is_refused(oauth):
    responses.post(TOKEN_URL, status=404)
    responses.get(SUBDOMAIN_URL, json={"id": 1, "domain": "attacker.example.com"})
    with pytest.raises(ReauthRequired):
        oauth.refresh_following_moves(HOST, MOVED)
    assert len(responses.calls) == 2  # the refresh token never went to the foreign host
