"""Fixtures for the Bitrix24 connector: the fake portal behind `responses`, a client on the real limiter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import responses

from connectors.bitrix24.client import Bitrix24Client
from connectors.bitrix24.limits import LeakyBucketLimiter, MemoryOperatingBudget, b24_is_throttled
from connectors.bitrix24.oauth import B24OAuth
from connectors.bitrix24.transport import B24Transport
from connectors.http import PortalHttp
from connectors.types import OAuthToken
from tests.support.fake_bitrix24 import CLIENT_ID, CLIENT_SECRET, FakeBitrix24


class MemoryTokens:
    """An in-memory TokenSource with a real lock, so threads can share it."""

    def __init__(self, token: OAuthToken) -> None:
        import threading

        self.token: OAuthToken | None = token
        self.saved: list[OAuthToken] = []
        self.reauth: list[str] = []
        self._lock = threading.Lock()

    def get(self) -> OAuthToken | None:
        return self.token

    def save(self, token: OAuthToken) -> None:
        self.token = token
        self.saved.append(token)

    @contextmanager
    def refresh_lock(self) -> Iterator[None]:
        with self._lock:
            yield

    def mark_reauth_required(self, reason: str) -> None:
        self.reauth.append(reason)


def stored_token(fake: FakeBitrix24, access: str = "access-1", refresh: str = "refresh-1") -> OAuthToken:
    return OAuthToken(
        access,
        refresh,
        datetime.now(UTC) + timedelta(hours=1),
        {
            "server_endpoint": fake.server_endpoint,
            "client_endpoint": fake.client_endpoint,
            "member_id": fake.member_id,
        },
    )


@pytest.fixture
def fake() -> Iterator[FakeBitrix24]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeBitrix24(rsps)


def make_client(
    fake: FakeBitrix24, redis_client: Any, tokens: MemoryTokens | None = None, **http_kwargs: Any
) -> tuple[Bitrix24Client, MemoryTokens]:
    tokens = tokens or MemoryTokens(stored_token(fake))
    oauth = B24OAuth(CLIENT_ID, CLIENT_SECRET)
    limiter = LeakyBucketLimiter(redis_client, f"b24:test:{fake.member_id}")
    http = PortalHttp(
        name="bitrix24:test",
        limiter=limiter,
        is_throttled=b24_is_throttled,
        timeout=(3.05, 55),
        **http_kwargs,
    )
    transport = B24Transport(
        client_endpoint=fake.client_endpoint,
        tokens=tokens,
        refresh=oauth.refresh,
        http=http,
        budget=MemoryOperatingBudget(),
    )
    return Bitrix24Client(transport, timezone="Europe/Moscow"), tokens


@pytest.fixture
def crm(fake: FakeBitrix24, redis_client: redis.Redis) -> Iterator[Bitrix24Client]:
    client, _ = make_client(fake, redis_client)
    yield client
    # The bucket held: the portal never answered 503.
    assert fake.throttled == 0
