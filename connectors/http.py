"""The one HTTP path every platform client takes: rate limited, retried where safe, logged without secrets.

Each connector builds one `PortalHttp` per portal. It knows nothing of any platform's error bodies: it
returns 2xx-4xx responses for the client to interpret and turns only transient trouble (connection
errors, timeouts, 429, 5xx) into retries and, when those run out, `RetryLater`.

Retrying must not create things twice. A POST that timed out or got a 502 may have been applied, so
non-idempotent calls are retried only when the request provably never reached the application: the
connection was never made, or the platform throttled it (429, or whatever `is_throttled` recognises).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import requests
from requests import exceptions as rexc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from urllib3.exceptions import MaxRetryError, NewConnectionError

from .errors import RetryLater
from .ratelimit import RateLimiter

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "SECRET_PARAMS",
    "PortalHttp",
    "default_is_throttled",
    "parse_retry_after",
    "redact_url",
]

logger = logging.getLogger("connectors.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
SECRET_PARAMS = frozenset(
    {"auth", "access_token", "refresh_token", "client_secret", "code", "token", "password", "api_key"}
)
_REDACTED = "***"
_BRACKET_PART = re.compile(r"\[([^\]]*)\]")
# Bitrix24 answers 503 with this error when its leaky bucket overflows; the call was not executed.
_THROTTLE_ERRORS = frozenset({"QUERY_LIMIT_EXCEEDED"})
# Error bodies are small; a huge 5xx page is not worth parsing for a retry hint.
_MAX_HINT_BODY = 64 * 1024


def _is_secret_param(raw_name: str) -> bool:
    name = unquote_plus(raw_name).lower()
    # Bitrix24 nests credentials as auth[access_token]; check the base and every bracketed part.
    base = name.split("[", 1)[0]
    return base in SECRET_PARAMS or any(part in SECRET_PARAMS for part in _BRACKET_PART.findall(name))


def redact_url(url: str) -> str:
    """`url` with secret query values and any password in the authority replaced by ``***``.

    Works on the raw query string, so everything that is not a secret keeps its exact spelling.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{_REDACTED}@{host}"
    query = parts.query
    if query:
        pieces = []
        for piece in query.split("&"):
            name, sep, _value = piece.partition("=")
            pieces.append(f"{name}={_REDACTED}" if sep and _is_secret_param(name) else piece)
        query = "&".join(pieces)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date); None if absent or garbage.

    A date in the past means "now" (0.0). `now` is injectable for tests; it defaults to the current UTC time.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        # RFC 9110 says integer seconds; some servers send "1.5", which is harmless to accept.
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # "-0000" dates parse as naive; HTTP-dates are always GMT.
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _json_body(response: requests.Response) -> Mapping[str, Any] | None:
    if len(response.content or b"") > _MAX_HINT_BODY:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, Mapping) else None


def _body_retry_after(response: requests.Response) -> float | None:
    body = _json_body(response)
    if body is None:
        return None
    value = body.get("retry_after")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    return parse_retry_after(str(value))


def default_is_throttled(response: requests.Response) -> bool:
    """True when the platform refused the call for rate reasons, so it was not applied and may be retried
    whatever the method: any 429, and Bitrix24's 503 ``QUERY_LIMIT_EXCEEDED``."""
    if response.status_code == 429:
        return True
    if response.status_code == 503:
        body = _json_body(response)
        return body is not None and body.get("error") in _THROTTLE_ERRORS
    return False


def _never_sent(exc: rexc.RequestException) -> bool:
    """True when the request cannot have reached the server (no connection was established)."""
    if isinstance(exc, rexc.ConnectTimeout):
        return True
    if isinstance(exc, rexc.ConnectionError) and exc.args:
        cause = exc.args[0]
        # A refused or unresolvable connection; "Connection aborted" (ProtocolError) can come after the
        # body was sent, so it does not count.
        return isinstance(cause, MaxRetryError) and isinstance(cause.reason, NewConnectionError)
    return False


class _Transient(Exception):
    """One failed attempt, carried through tenacity; never leaves this module."""

    def __init__(
        self,
        reason: str,
        *,
        retry_safe: bool,
        retry_after: float | None = None,
        throttled: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_safe = retry_safe
        self.retry_after = retry_after
        self.throttled = throttled
        self.status = status


class PortalHttp:
    """A `requests.Session` for one portal, with its rate limiter, retries and redacted logging.

    Create one per portal and process and reuse it; close it (or use it as a context manager) when done.
    """

    def __init__(
        self,
        *,
        name: str,
        limiter: RateLimiter,
        timeout: float | tuple[float, float] = (3.05, 20),
        max_attempts: int = 4,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        acquire_timeout: float | None = 30.0,
        is_throttled: Callable[[requests.Response], bool] = default_is_throttled,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be a positive integer, got {max_attempts!r}")
        for field, value in (("backoff_initial", backoff_initial), ("backoff_max", backoff_max)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{field} must be a non-negative number of seconds, got {value!r}")
        if backoff_max < backoff_initial:
            raise ValueError(f"backoff_max must be >= backoff_initial ({backoff_initial}), got {backoff_max}")
        self.name = name
        self.limiter = limiter
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.acquire_timeout = acquire_timeout
        self._sleep = sleep
        self._is_throttled = is_throttled
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self._backoff = wait_exponential(multiplier=self.backoff_initial, max=self.backoff_max) + wait_random(
            0, self.backoff_initial
        )

    def __repr__(self) -> str:
        return f"PortalHttp(name={self.name!r}, limiter={self.limiter!r})"

    def __enter__(self) -> PortalHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session if this object created it; a session passed in belongs to the caller."""
        if self._owns_session:
            self.session.close()

    # -- public API ---------------------------------------------------------------------------------

    def request(
        self, method: str, url: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> requests.Response:
        """Send one logical request and return the final response (2xx-4xx, except a 429).

        `idempotent` defaults from the method (POST and PATCH are not). Raises `RetryLater` when transient
        failures outlast `max_attempts`, when a retry would be unsafe, or when the platform asks for a wait
        longer than `backoff_max` (holding a worker for minutes is worse than re-queueing the job).
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        kwargs.setdefault("timeout", self.timeout)
        safe_url = redact_url(url)
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            sleep=self._sleep,
            reraise=True,
        )
        attempts = 0

        def attempt() -> requests.Response:
            nonlocal attempts
            attempts += 1
            return self._attempt(attempts, method, url, safe_url, idempotent, kwargs)

        try:
            return retrying(attempt)
        except _Transient as failure:
            if not failure.retry_safe:
                why = " (not retried: it may have been applied)"
            elif failure.retry_after is not None and failure.retry_after > self.backoff_max:
                why = f" (platform asks to wait {failure.retry_after:g} s)"
            else:
                why = ""
            message = (
                f"{self.name}: {method} {safe_url} failed after {attempts} attempt(s): {failure.reason}{why}"
            )
            if failure.retry_after is not None:
                raise RetryLater(message, retry_after=failure.retry_after) from None
            # from None: a chained requests exception would print the unredacted URL in tracebacks.
            raise RetryLater(message) from None

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", url, **kwargs)

    # -- internals ----------------------------------------------------------------------------------

    def _attempt(
        self,
        attempt: int,
        method: str,
        url: str,
        safe_url: str,
        idempotent: bool,
        kwargs: dict[str, Any],
    ) -> requests.Response:
        # Each attempt is a real request against the platform's budget, retries included.
        self.limiter.acquire(timeout=self.acquire_timeout)
        started = time.monotonic()
        try:
            response = self.session.request(method, url, **kwargs)
        except (rexc.InvalidURL, rexc.MissingSchema, rexc.InvalidSchema, rexc.InvalidHeader):
            raise  # our bug, not the network's: retrying cannot help
        except rexc.RequestException as exc:
            # Only the class name: requests puts the full URL, secrets included, in its messages.
            self._log(logging.WARNING, method, safe_url, type(exc).__name__, attempt, started)
            never_sent = _never_sent(exc)
            raise _Transient(type(exc).__name__, retry_safe=idempotent or never_sent) from None
        status = response.status_code
        throttled = self._is_throttled(response)
        if status not in RETRY_STATUSES and not throttled:
            self._log(logging.INFO, method, safe_url, status, attempt, started)
            return response
        self._log(logging.WARNING, method, safe_url, status, attempt, started)
        retry_after = self._retry_after(response)
        if throttled or status in (429, 503):
            # Tell every other process too, or they spend the budget we were just told we do not have.
            self.limiter.pause(retry_after if retry_after is not None else self._nominal_backoff(attempt))
        response.close()
        raise _Transient(
            f"HTTP {status}",
            retry_safe=idempotent or throttled,
            retry_after=retry_after,
            throttled=throttled,
            status=status,
        )

    @staticmethod
    def _retry_after(response: requests.Response) -> float | None:
        hints = [parse_retry_after(response.headers.get("Retry-After")), _body_retry_after(response)]
        known = [hint for hint in hints if hint is not None]
        return max(known) if known else None

    def _nominal_backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))

    def _should_retry(self, exc: BaseException) -> bool:
        if not isinstance(exc, _Transient) or not exc.retry_safe:
            return False
        return exc.retry_after is None or exc.retry_after <= self.backoff_max

    def _wait(self, state: RetryCallState) -> float:
        wait = min(self._backoff(state), self.backoff_max)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return wait

    def _log(
        self, level: int, method: str, safe_url: str, status: int | str, attempt: int, started: float
    ) -> None:
        duration_ms = (time.monotonic() - started) * 1000
        logger.log(
            level,
            "%s %s %s -> %s attempt=%d/%d duration_ms=%.0f",
            self.name,
            method,
            safe_url,
            status,
            attempt,
            self.max_attempts,
            duration_ms,
            extra={
                "portal": self.name,
                "http_method": method,
                "http_url": safe_url,
                "http_status": status,
                "attempt": attempt,
                "duration_ms": round(duration_ms, 1),
            },
        )
