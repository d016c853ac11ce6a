"""Authenticated, error-mapped calls to one amoCRM account (research/amocrm.md §1.2, §5.1, §5.5, §6).

- Bearer token from the `TokenSource`; refreshed 5 min before expiry or after a 401, once, under the
  source's lock, re-reading the pair inside it so a pair another process already rotated is used as is
  (refresh tokens are single use, §1.2). A second 401 → `ReauthRequired`.
- 400/402/404/405/422 → `Rejected` naming the path and code of the first validation error; a validation
  error coded ``NotFound`` is reported as 404, as amoCRM reports unknown ids inside a body that way.
- 429 that reaches here (`PortalHttp` normally turns it into `RetryLater`) → `RetryLater`.
- A 403 that is not JSON is nginx's block page (§5.5, §6): `on_blocked` is told, this instance makes no
  further call, and every call raises `Rejected(status=403, code="blocked")`.
- Lists: `limit=250`, then `_links.next.href` only; 204 is an empty list (§5.1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

from ..base import TokenSource
from ..errors import ReauthRequired, Rejected, RetryLater
from ..http import PortalHttp, parse_retry_after
from ..types import OAuthToken
from .const import API_HOST, DRIVE_HOST, PAGE_LIMIT
from .schemas import parse_error

__all__ = ["REFRESH_MARGIN", "AmoTransport"]

REFRESH_MARGIN = timedelta(minutes=5)
_HTML_HINTS = ("text/html", "text/plain")


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class AmoTransport:
    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenSource,
        refresh: Callable[[OAuthToken], OAuthToken] | None,
        http: PortalHttp,
        on_blocked: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        base = base_url.rstrip("/")
        if not API_HOST.match(base):
            raise ValueError(f"base_url must be https://<subdomain>.amocrm.ru|amocrm.com|kommo.com: {base!r}")
        self.base_url = base
        self._host = urlsplit(base).netloc
        self._tokens = tokens
        self._refresh = refresh
        self._http = http
        self._on_blocked = on_blocked
        self._clock = clock
        self.blocked = False

    # --- tokens -------------------------------------------------------------------------------------

    def _expiring(self, token: OAuthToken) -> bool:
        return token.expires_at is not None and token.expires_at - REFRESH_MARGIN <= self._clock()

    def _reauth(self, reason: str) -> ReauthRequired:
        self._tokens.mark_reauth_required(reason)
        return ReauthRequired(reason)

    def _access_token(self) -> str:
        token = self._tokens.get()
        if token is None:
            raise self._reauth("no amoCRM token stored")
        if self._expiring(token) and self._refresh is not None:
            return self._refreshed(token.access_token)
        return token.access_token

    def _refreshed(self, stale: str) -> str:
        if self._refresh is None:
            raise self._reauth("amoCRM refused the access token and no refresh is configured")
        with self._tokens.refresh_lock():
            current = self._tokens.get()
            if current is None:
                raise self._reauth("no amoCRM token stored")
            if current.access_token != stale and not self._expiring(current):
                return current.access_token  # another worker rotated it while we waited for the lock
            try:
                new = self._refresh(current)
            except ReauthRequired as exc:
                raise self._reauth(str(exc)) from None
            # Persist before use: the old refresh token is spent now (§1.2, Facts 4).
            self._tokens.save(new)
            self._follow(new)
            return new.access_token

    def _follow(self, token: OAuthToken) -> None:
        """The account answered from a new host during the refresh: send this client's calls there."""
        moved = (token.extra or {}).get("account_host")
        if isinstance(moved, str) and moved != self._host and API_HOST.match(f"https://{moved}"):
            self.base_url, self._host = f"https://{moved}", moved

    # --- requests -----------------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith("/"):
            return self.base_url + path_or_url
        host = urlsplit(path_or_url).netloc
        origin = f"https://{host}"
        # Our token only ever goes to the account host or its drive host.
        if host != self._host and not DRIVE_HOST.match(origin):
            raise Rejected(f"refusing to call {origin}: not this account's host", code="foreign_host")
        return path_or_url

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """Send with auth; return a 2xx response or raise the mapped error."""
        if self.blocked:
            raise Rejected(
                "amoCRM blocked this portal (403); no calls until unblocked", status=403, code="blocked"
            )
        headers = dict(kwargs.pop("headers", None) or {})
        # The token first: a refresh may learn that the account moved, and the URL must follow it.
        token = self._access_token()
        url = self.url(path_or_url)
        headers["Authorization"] = f"Bearer {token}"
        response = self._http.request(method, url, headers=headers, **kwargs)
        if response.status_code == 401:
            headers["Authorization"] = f"Bearer {self._refreshed(token)}"
            url = self.url(path_or_url)
            response = self._http.request(method, url, headers=headers, **kwargs)
            if response.status_code == 401:
                raise self._reauth("amoCRM answered 401 with a freshly refreshed token")
        return self._checked(method, url, response)

    def _checked(self, method: str, url: str, response: requests.Response) -> requests.Response:
        status = response.status_code
        if status < 300:
            return response
        path = urlsplit(url).path
        body = _json(response)
        if status == 403 and not isinstance(body, Mapping):
            self.blocked = True
            reason = f"amoCRM answered {method} {path} with a non-JSON 403 (IP or account blocked)"
            if self._on_blocked is not None:
                self._on_blocked(reason)
            raise Rejected(reason, status=403, code="blocked", path=path)
        if status == 429:
            hint = body.get("retry_after") if isinstance(body, Mapping) else None
            wait = parse_retry_after(str(hint)) if hint is not None else None
            if wait is None:
                wait = parse_retry_after(response.headers.get("Retry-After"))
            raise RetryLater(
                f"amoCRM: {method} {path} answered 429", retry_after=60 if wait is None else wait
            )
        if status >= 500:
            raise RetryLater(f"amoCRM: {method} {path} answered {status}")
        detail, code, field = parse_error(body)
        mapped = 404 if (code or "").lower() == "notfound" else status
        raise Rejected(
            f"amoCRM {method} {path} → {status}: {detail or response.reason} (code={code}, path={field})",
            status=mapped,
            code=code,
            path=field or path,
        )

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The JSON body of a GET; None for 204 (no content)."""
        response = self.request("GET", path, params=dict(params or {}))
        if response.status_code == 204 or not response.content:
            return None
        body = _json(response)
        if not isinstance(body, dict):
            raise RetryLater(f"amoCRM: GET {path} returned a body that is not a JSON object")
        return body

    def send_json(self, method: str, path: str, payload: Any, **kwargs: Any) -> Any:
        response = self.request(method, path, json=payload, **kwargs)
        return _json(response) if response.content else None

    def iter_pages(
        self, path: str, name: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[Mapping[str, Any]]:
        """Every item of a paged list, following `_links.next.href` only."""
        query: dict[str, Any] | None = {**dict(params or {}), "limit": PAGE_LIMIT}
        target = path
        seen: set[str] = set()
        while True:
            body = self.get_json(target, query)
            if body is None:
                return
            yield from ((body.get("_embedded") or {}).get(name) or [])
            nxt = ((body.get("_links") or {}).get("next") or {}).get("href")
            if not nxt or nxt in seen:
                return
            seen.add(nxt)
            target, query = nxt, None
