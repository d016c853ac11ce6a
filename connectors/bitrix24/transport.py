"""Authenticated, limited, error-mapped REST calls to one Bitrix24 portal (research/bitrix24.md §1.6, §6, §7).

- `auth` goes in the query string (redacted in logs); the body is JSON. Reads are retried by `PortalHttp`
  on transient trouble, writes only when provably not applied (503 QUERY_LIMIT_EXCEEDED).
- 401 ``expired_token`` → one refresh under the token source's lock (the token re-read inside it, so a
  pair another worker rotated is used as is), the rotated pair saved before use, the call retried once.
  Refusals of the grant → `ReauthRequired` and the source marks the portal.
- A 30x (portal moved) is re-POSTed to the new address, never turned into a GET, and reported through
  `on_moved` so `domain` / `client_endpoint` are updated.
- 429 ``OPERATION_TIME_LIMIT`` pauses that method only, until `operating_reset_at`; every answer's
  `time.operating` feeds the per-method budget, which defers a method before the platform blocks it.
- Batches: ≤ 50 commands, `result_error` read per command, halved after one came near the 60 s limit.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from ..base import TokenSource
from ..errors import ReauthRequired, Rejected, RetryLater
from ..http import PortalHttp
from ..types import OAuthToken
from .forms import build_query

__all__ = ["BATCH_MAX", "B24Transport", "BatchResult", "Budget", "portal_host_ok", "refused"]

BATCH_MAX = 50
SLOW_BATCH_S = 40.0
"""A batch that took this long came near the platform's 60 s limit: the next ones are half as big."""
PAGE_SIZE = 50
IN_FLIGHT = 2
"""Batches of one `batch_many` sent at once; the platform's bucket, not our latency, sets the pace."""
_PORTAL_HOST = re.compile(
    r"^[a-z0-9][a-z0-9-]{0,62}\.bitrix24\.(ru|com|de|by|kz|ua|eu|es|fr|pl|in|br|jp|cn|vn|id|uk|it|tech|site)$"
)
_NOT_FOUND = frozenset({"NOT_FOUND", "ERROR_NOT_FOUND", "ENTITY_NOT_FOUND"})
_FORBIDDEN = frozenset({"ACCESS_DENIED", "insufficient_scope", "user_access_error", "WRONG_AUTH_TYPE"})
_REAUTH_401 = frozenset({"invalid_token", "PAYMENT_REQUIRED", "APPLICATION_NOT_FOUND", "NO_AUTH_FOUND"})


def portal_host_ok(host: str | None) -> bool:
    return bool(host) and bool(_PORTAL_HOST.match(str(host)))


class Budget(Protocol):
    def record(self, method: str, operating: float) -> None: ...

    def block(self, method: str, until_unix: float) -> None: ...

    def check(self, method: str) -> None: ...


@dataclass
class BatchResult:
    result: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Rejected] = field(default_factory=dict)


def refused(result: BatchResult, total: int, what: str, path: str) -> None:
    """`Rejected` naming every refused command of a batch (HTTP 200 hides them), if any was."""
    if not result.errors:
        return
    first = next(iter(result.errors.values()))
    names = ", ".join(f"{key}: {error.code}" for key, error in result.errors.items())
    raise Rejected(
        f"bitrix24: {len(result.errors)} of {total} {what} refused ({names})",
        status=first.status,
        code=first.code,
        path=path,
    )


class _MethodBlocked(Exception):
    def __init__(self, method: str, until: float) -> None:
        super().__init__(method)
        self.method = method
        self.until = until


def _loads(text: str) -> Any:
    # Money arrives as JSON numbers (opportunity): Decimal, never float.
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return None


def error_of(code: str | None, description: str | None, *, status: int, where: str) -> Rejected:
    code = code or "ERROR"
    mapped = 404 if code in _NOT_FOUND or "not found" in (description or "").lower() else status
    if code in _FORBIDDEN:
        mapped = 403
    return Rejected(
        f"bitrix24 {where}: {code}: {description or ''}".rstrip(": "), status=mapped, code=code, path=where
    )


class B24Transport:
    def __init__(
        self,
        *,
        client_endpoint: str,
        tokens: TokenSource,
        refresh: Callable[[OAuthToken], OAuthToken] | None,
        http: PortalHttp,
        budget: Budget,
        on_moved: Callable[[str], None] | None = None,
        auth_connector: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_endpoint = self._endpoint(client_endpoint)
        self._tokens = tokens
        self._refresh = refresh
        self._http = http
        self.budget = budget
        self._on_moved = on_moved
        self.auth_connector = auth_connector
        self._clock = clock
        self._reset_at: dict[str, float] = {}
        self.batch_size = BATCH_MAX
        self.in_flight = IN_FLIGHT
        self.calls: list[str] = []  # method names, for tests and benches

    @staticmethod
    def _endpoint(url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"client_endpoint must be https://<portal>/rest/: {url!r}")
        return url if url.endswith("/") else url + "/"

    # --- tokens -----------------------------------------------------------------------------------------

    def _reauth(self, reason: str) -> ReauthRequired:
        self._tokens.mark_reauth_required(reason)
        return ReauthRequired(reason)

    def _access_token(self) -> str:
        token = self._tokens.get()
        if token is None:
            raise self._reauth("no Bitrix24 token stored")
        return token.access_token

    def _refreshed(self, stale: str) -> str:
        if self._refresh is None:
            raise self._reauth("Bitrix24 token expired and no refresh is configured")
        with self._tokens.refresh_lock():
            current = self._tokens.get()
            if current is None:
                raise self._reauth("no Bitrix24 token stored")
            if current.access_token != stale:
                return current.access_token  # another worker refreshed while we waited for the lock
            try:
                new = self._refresh(current)
            except ReauthRequired as exc:
                raise self._reauth(str(exc)) from None
            # Saved before use: the old refresh token must never be sent again.
            self._tokens.save(new)
            endpoint = new.extra.get("client_endpoint")
            if endpoint and endpoint != self.client_endpoint:
                self._moved(str(endpoint))
            return new.access_token

    # --- one call ---------------------------------------------------------------------------------------

    def _moved(self, endpoint: str) -> None:
        host = urlsplit(endpoint).hostname
        if not portal_host_ok(host):
            raise Rejected(f"bitrix24 moved to {host!r}, which is not a Bitrix24 portal", code="foreign_host")
        self.client_endpoint = self._endpoint(endpoint)
        if self._on_moved is not None:
            self._on_moved(self.client_endpoint)

    def _observer(self, method: str) -> Callable[..., requests.Response]:
        def observe(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
            body = _loads(response.text) if response.content else None
            response._b24_body = body  # type: ignore[attr-defined]
            timing = body.get("time") if isinstance(body, dict) else None
            if isinstance(timing, dict):
                try:
                    self.budget.record(method, float(timing.get("operating") or 0))
                    if timing.get("operating_reset_at"):
                        self._reset_at[method] = float(timing["operating_reset_at"])
                except (TypeError, ValueError):
                    pass
            if (
                response.status_code == 429
                and isinstance(body, dict)
                and body.get("error") == "OPERATION_TIME_LIMIT"
            ):
                until = self._reset_at.get(method) or self._clock() + 600
                self.budget.block(method, max(until, self._clock() + 1))
                # Raised inside requests, before PortalHttp would pause the whole portal for one method.
                raise _MethodBlocked(method, until)
            return response

        return observe

    def _send(self, method: str, params: Mapping[str, Any], token: str, read: bool) -> requests.Response:
        url = f"{self.client_endpoint}{method}"
        try:
            response = self._http.request(
                "POST",
                url,
                params={"auth": token},
                json=dict(params),
                idempotent=read,
                allow_redirects=False,
                hooks={"response": [self._observer(method)]},
            )
        except _MethodBlocked as exc:
            raise RetryLater(
                f"bitrix24: {method} answered OPERATION_TIME_LIMIT", exc.until - self._clock()
            ) from None
        if response.status_code in (301, 302, 303, 307, 308):
            location = response.headers.get("Location", "")
            moved = urlsplit(location)
            if moved.hostname and moved.hostname != urlsplit(self.client_endpoint).hostname:
                self._moved(f"https://{moved.hostname}/rest/")
                return self._send(method, params, token, read)
            raise RetryLater(f"bitrix24: {method} redirected to {moved.hostname!r}")
        return response

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, read: bool = False
    ) -> dict[str, Any]:
        """The whole JSON body of a successful call; errors mapped to the connector's exceptions."""
        params = dict(params or {})
        self.budget.check(method)
        self.calls.append(method)
        token = self._access_token()
        response = self._send(method, params, token, read)
        if response.status_code == 401 and self._error(response)[0] == "expired_token":
            response = self._send(method, params, self._refreshed(token), read)
        return self._checked(method, response)

    @staticmethod
    def _error(response: requests.Response) -> tuple[str | None, str | None]:
        body = getattr(response, "_b24_body", None)
        if body is None and response.content:
            body = _loads(response.text)
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"]), str(body.get("error_description") or "")
        return None, None

    def _checked(self, method: str, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
        code, description = self._error(response)
        if status < 300 and code is None:
            body = getattr(response, "_b24_body", None)
            if not isinstance(body, dict):
                raise RetryLater(f"bitrix24: {method} answered a body that is not a JSON object")
            return body
        if status == 401:
            raise self._reauth(f"bitrix24 {method}: {code or 'HTTP 401'}")
        if status >= 500:
            raise RetryLater(f"bitrix24: {method} answered {status} {code or ''}".strip())
        if code in ("PAYMENT_REQUIRED",) or (code in _REAUTH_401):
            raise self._reauth(f"bitrix24 {method}: {code}")
        raise error_of(code, description, status=status if status >= 400 else 400, where=method)

    # --- lists ------------------------------------------------------------------------------------------

    def pages(
        self, method: str, params: Mapping[str, Any], items: Callable[[Any], Sequence[Any]]
    ) -> Iterator[Any]:
        """Every item of a paged list, following `next` (page size fixed at 50)."""
        start: int | None = 0
        while start is not None:
            body = self.call(method, {**params, "start": start}, read=True)
            yield from items(body.get("result"))
            nxt = body.get("next")
            start = int(nxt) if nxt not in (None, "") and int(nxt) > (start or 0) else None

    def export(
        self,
        method: str,
        params: Mapping[str, Any],
        items: Callable[[Any], Sequence[Any]],
        id_key: str = "id",
    ) -> Iterator[Any]:
        """Big lists by `>ID` with `start=-1` (no count query): research/bitrix24.md §5 Paging."""
        last = 0
        base_filter = dict(params.get("filter") or {})
        while True:
            query = {
                **params,
                "filter": {**base_filter, f">{id_key}": last},
                "order": {id_key: "ASC"},
                "start": -1,
            }
            got = list(items(self.call(method, query, read=True).get("result")))
            yield from got
            if len(got) < PAGE_SIZE:
                return
            last = int(got[-1][id_key])

    # --- batch ------------------------------------------------------------------------------------------

    def batch(
        self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False
    ) -> BatchResult:
        """One `batch` call of at most 50 commands (chaining with `$result[key]` needs one call)."""
        if len(commands) > BATCH_MAX:
            raise ValueError(f"a batch holds at most {BATCH_MAX} commands, got {len(commands)}")
        if not commands:
            return BatchResult()
        for method, _ in commands.values():
            self.budget.check(method)
        cmd = {key: f"{method}?{build_query(params)}" for key, (method, params) in commands.items()}
        started = time.monotonic()
        body = self.call("batch", {"halt": 1 if halt else 0, "cmd": cmd})
        took = time.monotonic() - started
        outer = body.get("result") or {}
        duration = (body.get("time") or {}).get("duration")
        slowest = max(took, float(duration or 0))
        if slowest >= SLOW_BATCH_S:
            self.batch_size = max(1, self.batch_size // 2)
        elif slowest < SLOW_BATCH_S / 4 and self.batch_size < BATCH_MAX:
            # Quick again: grow back, or one slow moment would shrink this client's batches for good.
            self.batch_size = min(BATCH_MAX, self.batch_size * 2)
        results = outer.get("result") or {}
        errors = outer.get("result_error") or {}
        for key, timing in (
            (outer.get("result_time") or {}).items() if isinstance(outer.get("result_time"), dict) else ()
        ):
            method = commands.get(key, ("", {}))[0]
            if method and isinstance(timing, dict):
                self.budget.record(method, float(timing.get("operating") or 0))
        out = BatchResult(result=dict(results) if isinstance(results, dict) else {})
        if isinstance(errors, dict):
            for key, err in errors.items():
                err = err if isinstance(err, dict) else {"error": str(err)}
                out.errors[key] = error_of(
                    err.get("error"),
                    err.get("error_description"),
                    status=400,
                    where=f"{commands.get(key, ('?',))[0]}[{key}]",
                )
        return out

    def batch_many(self, commands: Sequence[tuple[str, str, Mapping[str, Any]]]) -> BatchResult:
        """Independent commands in as many batches as needed (≤ `batch_size` each).

        Up to `in_flight` batches travel at once: the limiter alone sets the pace, so a slow answer (a busy
        portal, 50 writes behind it) does not leave the bucket's drain unused while we wait for it.
        """
        total = BatchResult()
        lock = threading.Lock()
        position = 0
        failure: list[BaseException] = []

        def worker() -> None:
            nonlocal position
            while not failure:
                with lock:
                    if position >= len(commands):
                        return
                    chunk = commands[position : position + self.batch_size]
                    position += len(chunk)
                try:
                    got = self.batch({key: (method, params) for key, method, params in chunk})
                except BaseException as exc:  # re-raised in the caller's thread below
                    failure.append(exc)
                    return
                with lock:
                    total.result.update(got.result)
                    total.errors.update(got.errors)

        workers = min(self.in_flight, max(1, -(-len(commands) // max(1, self.batch_size))))
        if workers == 1:
            worker()
        else:
            threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if failure:
            raise failure[0]
        return total
