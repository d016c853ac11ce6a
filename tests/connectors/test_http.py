"""PortalHttp: retries, Retry-After, limiter pauses, non-idempotent safety and secret-free logging."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import redis
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from connectors.errors import RetryLater
from connectors.http import PortalHttp, default_is_throttled, parse_retry_after, redact_url
from connectors.ratelimit import NullRateLimiter, RedisRateLimiter

URL = "https://clinic.example.test/api/v4/leads"

MakeHttp = Callable[..., PortalHttp]


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def limiter() -> NullRateLimiter:
    return NullRateLimiter()


@pytest.fixture
def make_http(sleeps: list[float], limiter: NullRateLimiter) -> Iterator[MakeHttp]:
    made: list[PortalHttp] = []

    def make(**overrides: object) -> PortalHttp:
        kwargs: dict[str, object] = {
            "name": "amocrm:clinic",
            "limiter": limiter,
            "backoff_initial": 0.01,
            "sleep": sleeps.append,
            **overrides,
        }
        http = PortalHttp(**kwargs)  # type: ignore[arg-type]
        made.append(http)
        return http

    yield make
    for http in made:
        http.close()


def refused() -> requests.ConnectionError:
    """What requests raises when nothing listens: the request never left this host."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, URL, reason))  # type: ignore[arg-type]


# -- retries ----------------------------------------------------------------------------------------


def test_429_then_502_then_200_succeeds_in_three_calls(
    mock: responses.RequestsMock, make_http: MakeHttp, limiter: NullRateLimiter, sleeps: list[float]
) -> None:
    mock.get(URL, status=429)
    mock.get(URL, status=502)
    mock.get(URL, json={"ok": True})

    response = make_http().request("GET", URL)

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert len(mock.calls) == 3
    assert len(sleeps) == 2
    # Every attempt, not every logical call, spends the platform's budget.
    assert limiter.acquired == 3


def test_default_timeout_is_sent_and_can_be_overridden(
    mock: responses.RequestsMock, make_http: MakeHttp
) -> None:
    mock.get(URL)
    mock.get(URL)
    http = make_http()

    http.get(URL)
    http.get(URL, timeout=5)

    assert mock.calls[0].request.req_kwargs["timeout"] == (3.05, 20)
    assert mock.calls[1].request.req_kwargs["timeout"] == 5


def test_retry_after_seconds_are_honoured(
    mock: responses.RequestsMock, make_http: MakeHttp, sleeps: list[float]
) -> None:
    mock.get(URL, status=429, headers={"Retry-After": "7"})
    mock.get(URL, status=503, headers={"Retry-After": "3"})
    mock.get(URL)

    assert make_http().get(URL).status_code == 200
    assert sleeps[0] >= 7
    assert sleeps[1] >= 3


def test_retry_after_http_date_is_honoured(
    mock: responses.RequestsMock, make_http: MakeHttp, sleeps: list[float]
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=12)
    mock.get(URL, status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    mock.get(URL)

    make_http().get(URL)

    assert sleeps[0] >= 10


def test_json_body_retry_after_is_honoured(
    mock: responses.RequestsMock, make_http: MakeHttp, sleeps: list[float]
) -> None:
    # amoCRM's 429 body; the docs do not promise a header.
    mock.get(URL, status=429, json={"title": "Too Many Requests", "status": 429, "retry_after": 5})
    mock.get(URL)

    make_http().get(URL)

    assert sleeps[0] >= 5


def test_limiter_is_paused_for_retry_after(
    mock: responses.RequestsMock, make_http: MakeHttp, limiter: NullRateLimiter
) -> None:
    mock.get(URL, status=429, headers={"Retry-After": "4"})
    mock.get(URL)

    make_http().get(URL)

    assert limiter.pauses == [4.0]


def test_429_pauses_the_shared_redis_budget(
    mock: responses.RequestsMock, make_http: MakeHttp, redis_client: redis.Redis
) -> None:
    shared = RedisRateLimiter(redis_client, "amocrm:ip", limit=7)
    elsewhere = RedisRateLimiter(redis_client, "amocrm:ip", limit=7)
    mock.get(URL, status=429, headers={"Retry-After": "7"})

    with pytest.raises(RetryLater) as caught:
        make_http(limiter=shared, max_attempts=1).get(URL)

    assert caught.value.retry_after == 7
    # Another process sharing the key is held back too.
    assert 6 < elsewhere.paused_for() <= 7
    assert elsewhere.try_acquire() > 6


def test_429_without_a_hint_still_pauses_for_the_backoff(
    mock: responses.RequestsMock, make_http: MakeHttp, limiter: NullRateLimiter
) -> None:
    mock.get(URL, status=429)
    mock.get(URL)

    make_http(backoff_initial=0.5).get(URL)

    assert limiter.pauses == [0.5]


def test_exhausted_429_raises_retry_later_with_retry_after(
    mock: responses.RequestsMock, make_http: MakeHttp, sleeps: list[float]
) -> None:
    for _ in range(4):
        mock.get(URL, status=429, headers={"Retry-After": "2"})

    with pytest.raises(RetryLater) as caught:
        make_http().get(URL)

    assert caught.value.retry_after == 2
    assert len(mock.calls) == 4
    assert len(sleeps) == 3
    assert all(wait >= 2 for wait in sleeps)


def test_a_wait_longer_than_backoff_max_is_left_to_the_job_queue(
    mock: responses.RequestsMock, make_http: MakeHttp, sleeps: list[float]
) -> None:
    mock.get(URL, status=429, json={"retry_after": 300})

    with pytest.raises(RetryLater, match="asks to wait 300 s") as caught:
        make_http().get(URL)

    assert caught.value.retry_after == 300
    assert len(mock.calls) == 1
    assert sleeps == []


def test_exhausted_5xx_raises_retry_later(mock: responses.RequestsMock, make_http: MakeHttp) -> None:
    for _ in range(3):
        mock.get(URL, status=504)

    with pytest.raises(RetryLater, match="failed after 3 attempt"):
        make_http(max_attempts=3).get(URL)

    assert len(mock.calls) == 3


def test_limiter_refusal_propagates_without_calling_the_platform(
    make_http: MakeHttp, redis_client: redis.Redis
) -> None:
    limiter = RedisRateLimiter(redis_client, "amocrm:ip", limit=7)
    limiter.pause(300)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(URL)
        with pytest.raises(RetryLater) as caught:
            make_http(limiter=limiter).get(URL)
        assert len(rsps.calls) == 0
    assert caught.value.retry_after > 290


# -- idempotency ------------------------------------------------------------------------------------


def test_get_is_retried_after_a_read_timeout(
    mock: responses.RequestsMock, make_http: MakeHttp, limiter: NullRateLimiter
) -> None:
    mock.get(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    mock.get(URL, body=requests.ConnectionError("Connection aborted."))
    mock.get(URL)

    assert make_http().get(URL).status_code == 200
    assert len(mock.calls) == 3
    assert limiter.pauses == []


def test_exhausted_read_timeouts_raise_retry_later(mock: responses.RequestsMock, make_http: MakeHttp) -> None:
    for _ in range(2):
        mock.get(URL, body=requests.exceptions.ReadTimeout("read timed out"))

    with pytest.raises(RetryLater, match="ReadTimeout"):
        make_http(max_attempts=2).get(URL)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_post_is_not_retried_on_5xx(mock: responses.RequestsMock, make_http: MakeHttp, status: int) -> None:
    mock.post(URL, status=status)

    with pytest.raises(RetryLater, match="may have been applied"):
        make_http().post(URL, json={"name": "Deal"})

    assert len(mock.calls) == 1


@pytest.mark.parametrize(
    "error",
    [requests.exceptions.ReadTimeout("read timed out"), requests.ConnectionError(ProtocolError("aborted"))],
)
def test_post_is_not_retried_when_it_may_have_reached_the_server(
    mock: responses.RequestsMock, make_http: MakeHttp, error: Exception
) -> None:
    mock.post(URL, body=error)

    with pytest.raises(RetryLater, match="may have been applied"):
        make_http().post(URL, json={"name": "Deal"})

    assert len(mock.calls) == 1


def test_post_is_retried_on_429(mock: responses.RequestsMock, make_http: MakeHttp) -> None:
    mock.post(URL, status=429)
    mock.post(URL, status=201, json={"id": 1})

    assert make_http().post(URL, json={"name": "Deal"}).status_code == 201
    assert len(mock.calls) == 2


def test_post_is_retried_when_the_connection_was_never_made(
    mock: responses.RequestsMock, make_http: MakeHttp
) -> None:
    mock.post(URL, body=refused())
    mock.post(URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    mock.post(URL, status=201)

    assert make_http().post(URL).status_code == 201
    assert len(mock.calls) == 3


def test_post_is_retried_on_bitrix_query_limit_exceeded(
    mock: responses.RequestsMock, make_http: MakeHttp, limiter: NullRateLimiter
) -> None:
    # Bitrix24 refuses an over-limit call with 503 before running it; every Bitrix call is a POST.
    mock.post(
        URL, status=503, json={"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    )
    mock.post(URL, json={"result": 7})

    assert make_http().post(URL).json() == {"result": 7}
    assert len(limiter.pauses) == 1


def test_idempotent_post_is_retried_on_502(mock: responses.RequestsMock, make_http: MakeHttp) -> None:
    mock.post(URL, status=502)
    mock.post(URL)

    assert make_http().post(URL, idempotent=True).status_code == 200
    assert len(mock.calls) == 2


def test_get_marked_non_idempotent_is_not_retried(mock: responses.RequestsMock, make_http: MakeHttp) -> None:
    mock.get(URL, status=500)

    with pytest.raises(RetryLater):
        make_http().get(URL, idempotent=False)

    assert len(mock.calls) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_returned_unretried(
    mock: responses.RequestsMock, make_http: MakeHttp, sleeps: list[float], status: int
) -> None:
    mock.get(URL, status=status, json={"title": "nope"})

    response = make_http().get(URL)

    assert response.status_code == status
    assert len(mock.calls) == 1
    assert sleeps == []


def test_default_is_throttled() -> None:
    def response(status: int, body: bytes) -> requests.Response:
        r = requests.Response()
        r.status_code = status
        r._content = body
        return r

    assert default_is_throttled(response(429, b"<html>"))
    assert default_is_throttled(response(503, b'{"error": "QUERY_LIMIT_EXCEEDED"}'))
    assert not default_is_throttled(response(503, b"<html>maintenance</html>"))
    assert not default_is_throttled(response(503, b'["QUERY_LIMIT_EXCEEDED"]'))
    assert not default_is_throttled(response(500, b'{"error": "QUERY_LIMIT_EXCEEDED"}'))


# -- logging and redaction --------------------------------------------------------------------------

SECRETS = ("s3cr3t-auth", "s3cr3t-access", "s3cr3t-refresh", "s3cr3t-client", "s3cr3t-code", "TOPSECRET")
SECRET_URL = (
    f"{URL}?page=2&auth={SECRETS[0]}&access_token={SECRETS[1]}&refresh_token={SECRETS[2]}"
    f"&client_secret={SECRETS[3]}&code={SECRETS[4]}"
)


def test_log_line_has_redacted_url_status_attempt_and_duration(
    mock: responses.RequestsMock, make_http: MakeHttp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connectors.http")
    mock.get(URL, status=502)
    mock.get(URL, json={"token": "body-secret"})

    make_http().get(SECRET_URL, headers={"Authorization": f"Bearer {SECRETS[5]}"})

    records = [r for r in caplog.records if r.name == "connectors.http"]
    assert len(records) == 2
    first, second = (r.getMessage() for r in records)
    assert "GET" in first
    assert "page=2" in first
    assert "auth=***" in first
    assert "502" in first
    assert "attempt=1/4" in first
    assert "duration_ms=" in first
    assert "200" in second
    assert "attempt=2/4" in second
    assert records[0].levelno == logging.WARNING
    assert records[1].levelno == logging.INFO
    assert records[1].http_status == 200  # type: ignore[attr-defined]
    for secret in (*SECRETS, "Authorization", "Bearer", "body-secret"):
        assert secret not in caplog.text


def test_failures_never_leak_the_url_secrets(
    mock: responses.RequestsMock, make_http: MakeHttp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connectors.http")
    # requests puts the full URL in its exception messages.
    for _ in range(2):
        mock.get(URL, body=requests.ConnectionError(f"Max retries exceeded with url: {SECRET_URL}"))

    with pytest.raises(RetryLater) as caught:
        make_http(max_attempts=2).get(SECRET_URL)

    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    for secret in SECRETS[:5]:
        assert secret not in caplog.text
        assert secret not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://x.amocrm.ru/oauth2/access_token?client_secret=abc&code=def&grant_type=authorization_code",
            "https://x.amocrm.ru/oauth2/access_token?client_secret=***&code=***&grant_type=authorization_code",
        ),
        (
            "https://b24.example/rest/crm.deal.get.json?ID=7&auth=tok&AUTH[access_token]=a&auth%5Brefresh_token%5D=b",
            "https://b24.example/rest/crm.deal.get.json?ID=7&auth=***&AUTH[access_token]=***&auth%5Brefresh_token%5D=***",
        ),
        ("https://user:pw@host.example/p?q=1#frag", "https://user:***@host.example/p?q=1#frag"),
        ("https://host.example/plain", "https://host.example/plain"),
        (
            "https://host.example/p?flag&Access_Token=x&a=b=c",
            "https://host.example/p?flag&Access_Token=***&a=b=c",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# -- parse_retry_after ------------------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),
        ("Sun, 01 Mar 2026 12:01:00 -0000", 60.0),
        ("soon", None),
        ("Sun, 99 Foo 2026", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_defaults_to_the_current_time() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    result = parse_retry_after(soon)
    assert result is not None
    assert 55 < result <= 60


# -- construction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name must be a non-empty string, got ''"),
        ({"max_attempts": 0}, "max_attempts must be a positive integer, got 0"),
        ({"backoff_initial": -1}, "backoff_initial must be a non-negative number of seconds, got -1"),
        ({"backoff_max": 0.001}, "backoff_max must be >= backoff_initial (0.5), got 0.001"),
    ],
)
def test_constructor_validation(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "amocrm:clinic", "limiter": NullRateLimiter(), **kwargs}
    with pytest.raises(ValueError) as caught:
        PortalHttp(**args)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_close_closes_only_an_owned_session(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[requests.Session] = []
    real_close = requests.Session.close

    def recording_close(self: requests.Session) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(requests.Session, "close", recording_close)
    given = requests.Session()

    with PortalHttp(name="a", limiter=NullRateLimiter()) as own:
        pass
    with PortalHttp(name="b", limiter=NullRateLimiter(), session=given) as borrowed:
        assert borrowed.session is given

    assert closed == [own.session]
    given.close()
