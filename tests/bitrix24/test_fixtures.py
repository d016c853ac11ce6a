"""The fixtures are the fake's contract: it answers in their shapes, each is used, all are listed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import responses

from tests.bitrix24.fixture_world import standard_world
from tests.support.fake_bitrix24 import FakeBitrix24

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitrix24"
METHODS = sorted((FIXTURES / "methods").glob("*.json"))
FORMS = sorted((FIXTURES / "incoming").glob("*.form"))
_VOLATILE = {"time", "createdTime", "updatedTime", "CREATED", "createdDate", "TIMESTAMP_X", "date_start"}


def shape(value: Any) -> Any:
    """Keys and kinds, not values: the fake may number things differently, never reshape them."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text("utf-8"))


@pytest.mark.parametrize("path", [p for p in METHODS if "method" in _load(p)], ids=lambda p: p.stem)
def test_the_fake_answers_in_the_recorded_shape(path: Path) -> None:
    fixture = _load(path)
    fake = FakeBitrix24(None)
    standard_world(fake)
    status, body = fake.dispatch(fixture["method"], json.loads(json.dumps(fixture["params"])))
    body = json.loads(json.dumps(body, default=float))
    assert status == fixture["status"]
    assert shape(body) == shape(fixture["body"])


@pytest.mark.parametrize(
    ("name", "provoke"),
    [
        ("error_expired_token", lambda fake: fake.expire("access-1")),
        ("error_query_limit_exceeded", lambda fake: setattr(fake, "capacity", 0)),
        ("error_operation_time_limit", lambda fake: setattr(fake, "operating_limit", 0.0)),
    ],
)
def test_transport_errors_come_as_recorded(name: str, provoke: Any) -> None:
    import requests

    fixture = _load(FIXTURES / "methods" / f"{name}.json")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeBitrix24(rsps)
        provoke(fake)
        answer = requests.post(
            f"{fake.client_endpoint}user.get", params={"auth": "access-1"}, json={}, timeout=5
        )
    assert (answer.status_code, answer.json()) == (fixture["status"], fixture["body"])


def test_refresh_refusal_comes_as_recorded() -> None:
    import requests

    from tests.support.fake_bitrix24 import CLIENT_ID, CLIENT_SECRET

    fixture = _load(FIXTURES / "methods" / "oauth_invalid_grant.json")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeBitrix24(rsps)
        answer = requests.get(
            "https://oauth.bitrix.info/oauth/token/",
            params={
                "grant_type": "refresh_token",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": "spent",
            },
            timeout=5,
        )
    assert (answer.status_code, answer.json()) == (fixture["status"], fixture["body"])


def test_every_incoming_form_is_used_by_a_test() -> None:
    sources = "\n".join(p.read_text("utf-8") for p in Path(__file__).parent.glob("test_*.py"))
    unused = [p.stem for p in FORMS if not re.search(rf"['\"]{re.escape(p.stem)}['\"]", sources)]
    assert unused == []


def test_every_fixture_is_listed_with_its_doc_page() -> None:
    readme = (FIXTURES / "README.md").read_text("utf-8")
    missing = [
        f"{p.parent.name}/{p.name}" for p in [*FORMS, *METHODS] if f"`{p.parent.name}/{p.name}`" not in readme
    ]
    assert missing == []
    for path in METHODS:
        assert _load(path)["doc"].startswith("https://apidocs.bitrix24.com/")
