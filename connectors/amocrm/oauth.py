"""amoCRM OAuth 2.0 (research/amocrm.md §1): consent URL, code exchange, refresh, disconnect signature.

Token calls go to the account's own host (never www), after the `referer` it came from has been checked
against amoCRM's and Kommo's domains, so `client_secret` is never sent to a host someone typed in.
authlib's OAuth2Session does the grant mechanics; amoCRM wants `redirect_uri` in the refresh body too,
which a compliance hook adds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from ..errors import ReauthRequired, Rejected, RetryLater
from ..types import OAuthToken

__all__ = [
    "AMO_HOST",
    "AmoOAuth",
    "consent_url",
    "disconnect_signature_valid",
    "fetch_account",
    "validate_referer",
]

AMO_HOST = re.compile(r"^[a-z0-9-]+\.(amocrm\.ru|amocrm\.com|kommo\.com)$")
_CONSENT_HOSTS = {"amocrm.ru": "www.amocrm.ru", "amocrm.com": "www.amocrm.com", "kommo.com": "www.kommo.com"}
REVOKED_HINTS = ("invalid_grant", "token has been revoked", "refresh token has been revoked")


def validate_referer(referer: str | None) -> str:
    """The account host from amoCRM's `referer` parameter; Rejected for anything not an amo/Kommo host."""
    host = (referer or "").strip().lower()
    if not AMO_HOST.match(host):
        raise Rejected(
            f"referer: not an amoCRM or Kommo account host: {referer!r}", status=400, path="referer"
        )
    return host


def consent_url(client_id: str, state: str, *, brand: str = "amocrm.ru", mode: str = "post_message") -> str:
    host = _CONSENT_HOSTS.get(brand, "www.amocrm.ru")
    return f"https://{host}/oauth?" + urlencode({"client_id": client_id, "state": state, "mode": mode})


def disconnect_signature_valid(client_id: str, client_secret: str, account_id: str, signature: str) -> bool:
    expected = hmac.new(
        client_secret.encode(), f"{client_id}|{account_id}".encode(), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, (signature or "").lower())


def _token(document: dict[str, Any]) -> OAuthToken:
    if not isinstance(document.get("access_token"), str) or not document["access_token"]:
        # amo's problem JSON ({"title", "status", "hint"}) has no `error`, so authlib hands it over as if
        # it were a token: keep its status, which tells a vanished host (401/404) from a bad answer.
        status = document.get("status") if isinstance(document.get("status"), int) else None
        raise Rejected(
            f"amoCRM token endpoint: the answer has no access_token ({document.get('title') or 'no title'})",
            status=status,
            code="invalid_token_response",
        )
    expires_at = document.get("expires_at")
    if expires_at is not None:
        moment = datetime.fromtimestamp(int(expires_at), UTC)
    else:
        moment = datetime.now(UTC) + timedelta(seconds=int(document.get("expires_in", 86400)))
    return OAuthToken(
        access_token=document["access_token"],
        refresh_token=document.get("refresh_token"),
        expires_at=moment,
        extra={k: v for k, v in document.items() if k in {"token_type", "server_time", "api_domain"}},
    )


class AmoOAuth:
    def __init__(
        self, client_id: str, client_secret: str, redirect_uri: str, *, timeout: float = 15.0
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.timeout = timeout

    def _session(self, host: str, token: dict[str, Any] | None = None) -> OAuth2Session:
        session = OAuth2Session(
            self.client_id,
            self.client_secret,
            token=token,
            redirect_uri=self.redirect_uri,
            token_endpoint=f"https://{host}/oauth2/access_token",
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name, not a secret
        )

        def add_redirect_uri(url: str, headers: dict, body: str) -> tuple[str, dict, str]:
            fields = dict(parse_qsl(body))
            fields["redirect_uri"] = self.redirect_uri
            return url, headers, urlencode(fields)

        session.register_compliance_hook("refresh_token_request", add_redirect_uri)
        return session

    def _call(self, action: Any) -> OAuthToken:
        try:
            document = action()
        except OAuthError as exc:
            text = f"{exc.error} {exc.description or ''}".lower()
            if any(hint in text for hint in REVOKED_HINTS):
                raise ReauthRequired(f"amoCRM refused the grant: {exc.error}") from None
            raise Rejected(f"amoCRM token endpoint: {exc.error}", code=exc.error) from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            body = (exc.response.text if exc.response is not None else "").lower()
            if status in (400, 401) and any(hint in body for hint in REVOKED_HINTS):
                raise ReauthRequired("amoCRM refused the refresh token") from None
            if status is not None and (status == 429 or status >= 500):
                raise RetryLater(f"amoCRM token endpoint answered {status}", retry_after=30) from None
            raise Rejected(f"amoCRM token endpoint answered {status}", status=status) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryLater(
                f"amoCRM token endpoint unreachable ({type(exc).__name__})", retry_after=30
            ) from None
        return _token(dict(document))

    def exchange_code(self, host: str, code: str) -> OAuthToken:
        session = self._session(host)
        return self._call(
            lambda: session.fetch_token(
                f"https://{host}/oauth2/access_token",
                grant_type="authorization_code",
                code=code,
                timeout=self.timeout,
            )
        )

    def refresh_following_moves(
        self, host: str, token: OAuthToken, on_moved: Callable[[str], None] | None = None
    ) -> OAuthToken:
        """Refresh at `host`; if that host no longer knows the account (401/404 that is not a revoked
        grant), ask amo where it moved, once, and refresh there. The new host is reported to `on_moved`
        and carried in the token's `extra["account_host"]` so the caller's next request goes there."""
        try:
            return self.refresh(host, token)
        except Rejected as exc:
            if exc.status not in (401, 404):
                raise
            moved_to = current_account_host(token, timeout=self.timeout)
            if moved_to is None or moved_to == host:
                raise ReauthRequired(
                    f"amoCRM {host} no longer accepts the grant ({exc.status}) and names no new host"
                ) from None
        fresh = self.refresh(moved_to, token)
        if on_moved is not None:
            on_moved(moved_to)
        return OAuthToken(
            fresh.access_token,
            fresh.refresh_token,
            fresh.expires_at,
            extra={**(fresh.extra or {}), ACCOUNT_HOST_KEY: moved_to},
        )

    def refresh(self, host: str, token: OAuthToken) -> OAuthToken:
        if not token.refresh_token:
            raise ReauthRequired("no refresh token stored")
        session = self._session(host)
        return self._call(
            lambda: session.refresh_token(
                f"https://{host}/oauth2/access_token", refresh_token=token.refresh_token, timeout=self.timeout
            )
        )


ACCOUNT_HOST_KEY = "account_host"
"""Set in a refreshed token's `extra` when the account answered from a new host (moved or renamed)."""


def _jwt_claim(access_token: str, claim: str) -> Any:
    """A claim of amo's access-token JWT, read without verifying it: only a hint of where to ask next,
    and whatever it names must still pass the host allowlist before anything is sent there."""
    parts = access_token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        return json.loads(base64.urlsafe_b64decode(padded)).get(claim)
    except (ValueError, AttributeError):
        return None


def _api_domain(token: OAuthToken) -> str | None:
    candidate = (token.extra or {}).get("api_domain") or _jwt_claim(token.access_token, "api_domain")
    if isinstance(candidate, str) and AMO_HOST.match(candidate.lower()):
        return candidate.lower()
    return None


def current_account_host(token: OAuthToken, *, timeout: float = 15.0) -> str | None:
    """Where the account lives now (§1.2 "Account moved"): GET {api_domain}/oauth2/account/current/subdomain
    with the refresh token. None when the token names no api_domain or amo does not say."""
    api_domain = _api_domain(token)
    if api_domain is None or not token.refresh_token:
        return None
    try:
        response = requests.get(
            f"https://{api_domain}/oauth2/account/current/subdomain",
            headers={"X-Refresh-Token": token.refresh_token, "Accept": "application/json"},
            timeout=timeout,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RetryLater(f"amoCRM {api_domain} unreachable ({type(exc).__name__})", retry_after=30) from None
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryLater(f"amoCRM {api_domain} answered {response.status_code}", retry_after=30)
    if response.status_code != 200:
        return None
    try:
        document = response.json()
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    host = str(document.get("domain") or "").lower()
    if not host and document.get("subdomain") and document.get("top_level_domain"):
        host = f"{document['subdomain']}.amocrm.{document['top_level_domain']}".lower()
    return host if AMO_HOST.match(host) else None


def fetch_account(host: str, access_token: str, *, timeout: float = 15.0) -> dict[str, Any]:
    """GET /api/v4/account with a fresh token: which account the grant belongs to (id, subdomain, name)."""
    try:
        response = requests.get(
            f"https://{host}/api/v4/account",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=timeout,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RetryLater(
            f"amoCRM account endpoint unreachable ({type(exc).__name__})", retry_after=30
        ) from None
    if response.status_code == 401:
        raise ReauthRequired("amoCRM refused the new access token")
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryLater(f"amoCRM account endpoint answered {response.status_code}", retry_after=30)
    if response.status_code != 200:
        raise Rejected(
            f"amoCRM account endpoint answered {response.status_code}", status=response.status_code
        )
    document = response.json()
    if not isinstance(document, dict) or "id" not in document or "subdomain" not in document:
        raise Rejected("amoCRM account endpoint: unexpected body (no id/subdomain)")
    return document
