"""The widget's disposable JWT: only a token signed by amo for our integration and audience passes."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from connectors.amocrm.widget_auth import InvalidWidgetToken, audience_for, verify_disposable_token

SECRET = "integration-client-secret-0123456789abcdef"
AUD = audience_for("https://bridge.example.ru/install/amocrm/callback")


def token(secret: str = SECRET, alg: str = "HS256", **overrides) -> str:
    now = int(time.time())
    claims = {"iss": "https://clinic.amocrm.ru", "aud": AUD, "jti": "6f0d4a2e-1", "iat": now, "nbf": now,
              "exp": now + 1800, "account_id": 31415926, "user_id": 7001, "subdomain": "clinic",
              "client_uuid": "client-id", "is_admin": True}  # fmt: skip
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg}, claims, OctKey.import_key(secret))


def verify(value: str, now: int | None = None):
    return verify_disposable_token(value, client_secret=SECRET, client_id="client-id", audience=AUD, now=now)


def test_a_genuine_token_yields_account_and_user():
    claims = verify(token())
    assert (claims.account_id, claims.user_id, claims.subdomain, claims.is_admin) == (
        "31415926",
        "7001",
        "clinic",
        True,
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (lambda: token(secret="another-secret-0123456789abcdef-xx"), "signature"),
        (lambda: token(aud="https://evil.example"), "aud"),
        (lambda: token(exp=int(time.time()) - 120), "exp"),
        (lambda: token(client_uuid="someone-else"), "client_uuid"),
        (lambda: token(account_id=None), "account_id"),
        (lambda: "not.a.jwt", "signature"),
        (lambda: "garbage", "not a JWT"),
    ],
)
def test_forged_expired_or_foreign_tokens_are_refused(value, reason):
    with pytest.raises(InvalidWidgetToken) as caught:
        verify(value())
    assert str(caught.value).startswith("X-Auth-Token: ")
    assert reason in str(caught.value) or reason == "signature"


def test_clock_leeway_is_thirty_seconds():
    expired_by_20s = token(exp=int(time.time()) - 20)
    assert verify(expired_by_20s).user_id == "7001"


def test_none_algorithm_is_refused():
    header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"
    with pytest.raises(InvalidWidgetToken):
        verify(f"{header}.eyJhY2NvdW50X2lkIjoxfQ.")
