"""Fixtures for the Bitrix24 connector: the fake portal behind `responses`, a client on the real limiter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

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
from tests.support.tokens import MemoryTokens


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


# --- the Flask side ---------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitrix24"
FRAME_QUERY = "DOMAIN=clinic.bitrix24.ru&PROTOCOL=1&LANG=ru&APP_SID=a1b2c3"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"


def form(name: str, **replace: str) -> str:
    """A recorded incoming body, with some fields replaced (bracket keys spelled as in the body)."""
    pairs = parse_qsl((FIXTURES / "incoming" / f"{name}.form").read_text("utf-8"), keep_blank_values=True)
    pairs = [(k, replace.pop(k, v)) for k, v in pairs]
    pairs += list(replace.items())
    return urlencode(pairs)


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return settings.with_overrides(
        public_base_url="https://cb.example.ru",
        b24_client_id=CLIENT_ID,
        b24_client_secret=CLIENT_SECRET,
    )


@pytest.fixture
def portal_fake(fake: FakeBitrix24) -> FakeBitrix24:
    """The fake with the tokens the recorded bodies carry."""
    for token in ("admin-access-1", "admin-access-cb", "admin-access-off"):
        fake.tokens.add(token)
        fake.user_session(token, user_id=1)
    fake.user_session("user-access-7", user_id=7)
    fake.refresh_tokens.update({"admin-refresh-1", "admin-refresh-cb"})
    return fake


def post_form(client: Any, path: str, body: str, query: str = "") -> Any:
    return client.post(
        f"{path}?{query}" if query else path, data=body, content_type="application/x-www-form-urlencoded"
    )


@pytest.fixture
def installed(rt: Any, portal_fake: FakeBitrix24) -> int:
    """A portal installed from the callback's tokens (no HTTP), ready for events and robots."""
    from widget_server.bitrix24_install import record_install

    token = stored_token(portal_fake, "admin-access-cb", "admin-refresh-cb")
    done = record_install(
        rt,
        member_id=portal_fake.member_id,
        domain=portal_fake.domain,
        token=token,
        application_token=APP_TOKEN,
    )
    return done.portal_id
