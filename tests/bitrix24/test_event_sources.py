"""Bitrix24 calls only from Bitrix24's published servers (research/bitrix24.md fact 18): the lists are read,
never hard-coded; `log` reports strangers, `enforce` refuses them and stores nothing."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from sqlalchemy import func, select

from tests.bitrix24.conftest import form
from widget_server import bitrix24_sources, create_app
from widget_server.bitrix24_sources import (
    REDIS_KEY,
    SourceListInvalid,
    cached_source_list,
    parse_nodes,
    refresh_event_sources,
    source_verdict,
)
from widget_server.config import B24_SOURCE_LIST_URLS, ConfigError, load_settings
from widget_server.models import InboxEvent, Portal

SOURCES = Path(__file__).resolve().parents[1] / "fixtures" / "bitrix24" / "sources"
WORLD_URL, RU_URL = B24_SOURCE_LIST_URLS
LISTED = "195.208.184.200"
STRANGER = "203.0.113.9"


def _published(rsps: responses.RequestsMock, *, ru_status: int = 200) -> None:
    rsps.get(WORLD_URL, body=(SOURCES / "app-world.json").read_text(), content_type="application/json")
    rsps.get(
        RU_URL, body=(SOURCES / "app.json").read_text(), status=ru_status, content_type="application/json"
    )


def _inbox_count(rt: Any) -> int:
    with rt.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(InboxEvent)) or 0


def _refreshed(rt: Any) -> None:
    with responses.RequestsMock() as rsps:
        _published(rsps)
        assert refresh_event_sources().startswith("stored 9 nodes")
    rt.shared.pop("bitrix24_sources", None)


def _event_from(client: Any, address: str, **headers: str) -> Any:
    return client.post(
        "/bitrix24/events",
        data=form("oncrmdealupdate"),
        content_type="application/x-www-form-urlencoded",
        environ_base={"REMOTE_ADDR": address},
        headers=headers,
    )


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return settings.with_overrides(b24_event_source_check="enforce")


def test_the_published_lists_are_read_and_shared_through_redis(rt: Any) -> None:
    _refreshed(rt)

    stored = json.loads(rt.redis.get(REDIS_KEY))
    assert LISTED in {n.split("/")[0] for n in stored["nodes"]}
    assert stored["urls"] == list(B24_SOURCE_LIST_URLS)
    sources = cached_source_list()
    assert sources is not None and sources.allows("3.127.54.129") and not sources.allows(STRANGER)


def test_a_failed_refresh_keeps_the_last_good_list(rt: Any) -> None:
    _refreshed(rt)
    before = rt.redis.get(REDIS_KEY)

    with responses.RequestsMock() as rsps:
        rsps.get(WORLD_URL, json={"nodes": ["3.127.54.129"]})
        rsps.get(RU_URL, status=503)
        rsps.get(RU_URL, status=503)
        rsps.get(RU_URL, status=503)
        bitrix24_sources._get.retry.sleep = lambda _s: None  # type: ignore[attr-defined]
        outcome = refresh_event_sources()

    assert outcome.startswith("failed")
    assert rt.redis.get(REDIS_KEY) == before  # not replaced by the one list that did answer


@pytest.mark.parametrize(
    ("body", "reason"),
    [({"nodes": []}, "'nodes' must be a non-empty list"), ({"nodes": ["1.2.3.4", "node-7"]}, "nodes[1]")],
)
def test_an_unreadable_list_is_refused_naming_the_item(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(SourceListInvalid, match=reason.replace("[", r"\[")):
        parse_nodes(body, RU_URL)


def test_a_listed_server_is_heard(client: Any, rt: Any, installed: int) -> None:
    _refreshed(rt)
    inbox_before = _inbox_count(rt)
    response = _event_from(client, LISTED)
    assert response.status_code == 200, response.get_json()
    assert _inbox_count(rt) == inbox_before + 1


def test_enforce_refuses_a_stranger_naming_the_address_and_stores_nothing(
    client: Any, rt: Any, installed: int
) -> None:
    _refreshed(rt)
    inbox_before = _inbox_count(rt)
    for path, body in (
        ("/bitrix24/events", form("oncrmdealupdate")),
        ("/bitrix24/robots/notify", form("robot_notify")),
        ("/bitrix24/uninstall", form("onappuninstall")),
    ):
        response = client.post(
            path,
            data=body,
            content_type="application/x-www-form-urlencoded",
            environ_base={"REMOTE_ADDR": STRANGER},
        )
        assert response.status_code == 403, path
        error = response.get_json()["error"]
        assert error["code"] == "source_not_allowed"
        assert STRANGER in error["fields"]["remote_addr"][0]
    assert _inbox_count(rt) == inbox_before
    with rt.db.transaction() as session:
        assert session.get(Portal, installed).status == "active"  # the forged uninstall did nothing


def test_before_any_list_is_known_calls_are_heard(client: Any, rt: Any, installed: int) -> None:
    # Refusing with nothing to compare against would lose every event until the first refresh.
    inbox_before = _inbox_count(rt)
    response = _event_from(client, STRANGER)
    assert response.status_code == 200, response.get_json()
    assert _inbox_count(rt) == inbox_before + 1


def test_log_mode_hears_a_stranger_and_says_so(
    app: Any, rt: Any, installed: int, caplog: pytest.LogCaptureFixture
) -> None:
    _refreshed(rt)
    inbox_before = _inbox_count(rt)
    rt.settings = rt.settings.with_overrides(b24_event_source_check="log")
    with caplog.at_level(logging.WARNING, logger="widget_server.http.hooks_bitrix24"):
        response = _event_from(app.test_client(), STRANGER)
    assert response.status_code == 200
    assert _inbox_count(rt) == inbox_before + 1
    assert any(STRANGER in r.getMessage() and "accepted" in r.getMessage() for r in caplog.records)


def test_behind_a_trusted_proxy_the_forwarded_address_is_checked(rt: Any, installed: int) -> None:
    _refreshed(rt)
    proxied = create_app(rt.settings.with_overrides(trusted_proxy_hops=1), rt=rt).test_client()
    direct = create_app(rt.settings, rt=rt).test_client()

    assert _event_from(proxied, "127.0.0.1", **{"X-Forwarded-For": LISTED}).status_code == 200
    # Without a trusted proxy a caller cannot vouch for itself with a header.
    assert _event_from(direct, STRANGER, **{"X-Forwarded-For": LISTED}).status_code == 403


def test_a_stale_list_is_still_a_list() -> None:
    old = bitrix24_sources.SourceList(
        networks=tuple(parse_nodes({"nodes": [LISTED]}, RU_URL)),
        fetched_at=datetime.now(UTC) - timedelta(days=30),
        urls=(RU_URL,),
    )
    assert source_verdict(LISTED, "enforce", old).allowed
    assert not source_verdict(STRANGER, "enforce", old).allowed
    assert source_verdict(STRANGER, "log", old).allowed and source_verdict(STRANGER, "log", old).stranger
    assert source_verdict(STRANGER, "off", old).reason == "source check off"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"B24_EVENT_SOURCE_CHECK": "strict"}, "B24_EVENT_SOURCE_CHECK"),
        ({"B24_EVENT_SOURCE_CHECK": "enforce", "B24_EVENT_SOURCE_LISTS": " "}, "B24_EVENT_SOURCE_LISTS"),
        ({"B24_EVENT_SOURCE_LISTS": "ftp://lists.example/app.json"}, "B24_EVENT_SOURCE_LISTS"),
        ({"TRUSTED_PROXY_HOPS": "-1"}, "TRUSTED_PROXY_HOPS"),
    ],
)
def test_bad_source_settings_name_the_variable(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"REDIS_URL": "memory://", **env}, instance_path=tmp_path)
    assert refused.value.variable == variable
