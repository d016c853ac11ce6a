"""Bitrix24's OAuth server: token refresh and `app.info` verification (research/bitrix24.md §1.5, §2).

The host comes from the portal's `server_endpoint` and must be one of the two OAuth servers (west
`oauth.bitrix.info`, east `oauth.bitrix24.tech`): a payload naming any other host is refused before our
`client_secret` or a user's token goes anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import ReauthRequired, Rejected, RetryLater
from ..types import OAuthToken

__all__ = ["OAUTH_HOSTS", "B24OAuth", "oauth_host", "token_from_payload"]

OAUTH_HOSTS = frozenset({"oauth.bitrix.info", "oauth.bitrix24.tech"})
DEFAULT_HOST = "oauth.bitrix.info"
TIMEOUT = (3.05, 20)
# Errors after which this grant will never work again without an admin (§1.5 OAuth server errors).
REAUTH_ERRORS = frozenset({"invalid_grant", "invalid_client", "PAYMENT_REQUIRED", "invalid_scope"})


def oauth_host(server_endpoint: str | None, field: str = "server_endpoint") -> str:
    """The allow-listed OAuth host of `server_endpoint` (``https://oauth.bitrix.info/rest/``)."""
    if not server_endpoint:
        return DEFAULT_HOST
    try:
        parts = urlsplit(server_endpoint)
    except ValueError:
        raise Rejected(f"{field}: not a URL", status=400, code="invalid", path=field) from None
    if parts.scheme != "https" or parts.hostname not in OAUTH_HOSTS or parts.port not in (None, 443):
        raise Rejected(
            f"{field}: {server_endpoint!r} is not a Bitrix24 OAuth server ({', '.join(sorted(OAUTH_HOSTS))})",
            status=400,
            code="oauth_host",
            path=field,
        )
    return str(parts.hostname)


def _expires(body: Mapping[str, Any], now: datetime) -> datetime | None:
    if body.get("expires"):
        try:
            return datetime.fromtimestamp(int(body["expires"]), UTC)
        except (TypeError, ValueError):
            pass
    if body.get("expires_in"):
        try:
            return now + timedelta(seconds=int(body["expires_in"]))
        except (TypeError, ValueError):
            pass
    return None


def token_from_payload(
    auth: Mapping[str, Any], now: datetime, previous: OAuthToken | None = None
) -> OAuthToken:
    """A stored token from an OAuth answer or an `auth[...]` group (install, ONOFFLINEEVENT)."""
    extra = dict(previous.extra) if previous else {}
    for key in ("server_endpoint", "client_endpoint", "member_id", "scope", "status", "user_id"):
        if auth.get(key) not in (None, ""):
            extra[key] = str(auth[key])
    extra["refreshed_at"] = now.isoformat()
    return OAuthToken(
        access_token=str(auth["access_token"]),
        refresh_token=str(auth["refresh_token"]) if auth.get("refresh_token") else None,
        expires_at=_expires(auth, now),
        extra=extra,
    )


def _json(response: requests.Response) -> Any:
    try:
        return json.loads(response.text, parse_float=Decimal)
    except ValueError:
        return None


class B24OAuth:
    def __init__(
        self, client_id: str, client_secret: str, *, session: requests.Session | None = None
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        self.client_id = client_id
        self._secret = client_secret
        self._session = session or requests.Session()

    def refresh(self, token: OAuthToken, *, now: datetime | None = None) -> OAuthToken:
        """Spend `token.refresh_token` once for a new pair; never retried (the old one may be gone)."""
        if not token.refresh_token:
            raise ReauthRequired("bitrix24: no refresh token stored")
        try:
            host = oauth_host(token.extra.get("server_endpoint"))
        except Rejected as exc:
            raise ReauthRequired(str(exc)) from None
        try:
            response = self._session.get(
                f"https://{host}/oauth/token/",
                params={
                    "grant_type": "refresh_token",
                    "client_id": self.client_id,
                    "client_secret": self._secret,
                    "refresh_token": token.refresh_token,
                },
                timeout=TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise RetryLater(f"bitrix24 oauth: {type(exc).__name__}") from None
        body = _json(response)
        error = body.get("error") if isinstance(body, dict) else None
        if error in REAUTH_ERRORS:
            raise ReauthRequired(f"bitrix24 oauth refused the refresh: {error}")
        if response.status_code >= 500 or not isinstance(body, dict) or "access_token" not in body:
            raise RetryLater(f"bitrix24 oauth: HTTP {response.status_code} {error or ''}".strip())
        return token_from_payload(body, now or datetime.now(UTC), previous=token)

    def app_info(self, server_endpoint: str | None, auth_id: str) -> dict[str, Any]:
        """`app.info` on the OAuth server for a user's token: who we are to it, and which portal."""
        host = oauth_host(server_endpoint, "SERVER_ENDPOINT")
        try:
            response = self._session.post(
                f"https://{host}/rest/app.info",
                data={"auth": auth_id},
                timeout=TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise RetryLater(f"bitrix24 app.info: {type(exc).__name__}") from None
        body = _json(response)
        if response.status_code >= 500:
            raise RetryLater(f"bitrix24 app.info: HTTP {response.status_code}")
        if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
            code = body.get("error") if isinstance(body, dict) else None
            raise Rejected(
                f"AUTH_ID: app.info refused the token ({code})", status=401, code="app_info", path="AUTH_ID"
            )
        return body["result"]
