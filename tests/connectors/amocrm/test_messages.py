"""AmoCrmClient.send_message: the lead field, then the Salesbot run (research/amocrm.md §7)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses

from connectors.errors import Rejected, RetryLater
from connectors.types import OutgoingMessage
from tests.connectors.amocrm.test_client import make_client
from tests.connectors.amocrm.test_contract import AmoWorld
from tests.support.fake_amocrm import FakeAmo, load_fixture

BOT = "36143"


@pytest.fixture
def fake() -> Iterator[FakeAmo]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeAmo(rsps, rate_limit=None)


@pytest.fixture
def world(fake: FakeAmo) -> AmoWorld:
    return AmoWorld(fake)


def _runs(fake: FakeAmo) -> list[Any]:
    return [body for _, _, body in fake.calls("POST", "/api/v2/salesbot/run")]


def test_the_field_is_set_before_the_bot_runs_in_the_documented_shape(fake: FakeAmo, world: AmoWorld) -> None:
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")

    crm.send_message(OutgoingMessage(deal_id, "Ждём вас завтра", "1001", BOT), idempotency_key="m-1")

    [run] = _runs(fake)
    documented = load_fixture("api/salesbot_run__request.json")
    assert [sorted(item) for item in run] == [sorted(item) for item in documented]
    assert run == [{"bot_id": 36143, "entity_id": int(deal_id), "entity_type": 2}]
    methods = [(m, u.split("clinic.amocrm.ru")[1]) for m, u, _ in fake.log if m != "GET"]
    assert methods == [("PATCH", f"/api/v4/leads/{deal_id}"), ("POST", "/api/v2/salesbot/run")]
    assert world.messages(deal_id) == ["Ждём вас завтра"]


@pytest.mark.parametrize(
    ("message", "path", "status"),
    [
        (OutgoingMessage("{deal}", "Текст", "1001", None), "bot_id", 422),
        (OutgoingMessage("{deal}", "Текст", "1001", "424242"), "bot_id", 404),
        (OutgoingMessage("{deal}", "Текст", "777777", BOT), "text_field_id", 422),
        (OutgoingMessage("{deal}", "Текст", "", BOT), "text_field_id", 422),
    ],
    ids=["no bot", "unknown bot", "unknown field", "empty field"],
)
def test_a_wrong_mapping_names_its_field_and_keeps_no_key(
    fake: FakeAmo, world: AmoWorld, message: OutgoingMessage, path: str, status: int
) -> None:
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")
    wrong = OutgoingMessage(deal_id, message.text, message.text_field_id, message.bot_id)

    with pytest.raises(Rejected) as exc:
        crm.send_message(wrong, idempotency_key="m-wrong")

    assert (exc.value.path, exc.value.status) == (path, status)
    assert fake.bot_runs == []
    assert crm.created.get("message:m-wrong") is None


def test_a_run_whose_answer_was_lost_is_not_run_again(fake: FakeAmo, world: AmoWorld) -> None:
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")
    message = OutgoingMessage(deal_id, "Ждём вас завтра", "1001", BOT)
    fake.inject("timeout_after", 1, method="POST", path="salesbot")

    with pytest.raises(RetryLater):
        crm.send_message(message, idempotency_key="m-lost")
    with pytest.raises(Rejected) as exc:
        crm.send_message(message, idempotency_key="m-lost")

    assert (exc.value.code, exc.value.path) == ("outcome_unknown", "idempotency_key")
    assert len(fake.bot_runs) == 1


def test_a_throttled_run_was_not_taken_and_is_sent_on_the_retry(fake: FakeAmo, world: AmoWorld) -> None:
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")
    message = OutgoingMessage(deal_id, "Ждём вас завтра", "1001", BOT)
    fake.inject(
        429, 10, method="POST", path="salesbot", body=load_fixture("errors/too_many_requests__429.json")
    )

    with pytest.raises(RetryLater):
        crm.send_message(message, idempotency_key="m-429")
    fake.faults.clear()
    crm.send_message(message, idempotency_key="m-429")
    crm.send_message(message, idempotency_key="m-429")

    assert world.messages(deal_id) == ["Ждём вас завтра"]
