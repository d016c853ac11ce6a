"""Bitrix24Client.send_message: the UF field a "field changed" robot sends on (bot_id is not used)."""

from __future__ import annotations

import pytest

from connectors.bitrix24.client import Bitrix24Client
from connectors.errors import Rejected, RetryLater
from connectors.types import OutgoingMessage
from tests.support.fake_bitrix24 import FakeBitrix24


def _sent(fake: FakeBitrix24, deal: int) -> list[str]:
    return [v for d, k, v in fake.field_changes if d == deal and k == "UF_CRM_TEXT"]


def test_the_message_is_one_update_of_the_field_marked_as_ours(
    fake: FakeBitrix24, crm: Bitrix24Client
) -> None:
    deal = int(fake.new_deal("Орлов В. Н.")["id"])
    crm.transport.auth_connector = "clinicbridge"

    crm.send_message(OutgoingMessage(str(deal), "Ждём вас", "UF_CRM_TEXT", "ignored"), idempotency_key="m-1")

    [update] = fake.calls("crm.item.update")
    assert update["fields"] == {"UF_CRM_TEXT": "Ждём вас"}
    assert update["auth_connector"] == "clinicbridge"
    assert _sent(fake, deal) == ["Ждём вас"]


def test_an_update_whose_answer_was_lost_is_found_in_the_field(
    fake: FakeBitrix24, crm: Bitrix24Client
) -> None:
    deal = int(fake.new_deal("Орлов В. Н.")["id"])
    message = OutgoingMessage(str(deal), "Ждём вас", "UF_CRM_TEXT")
    fake.inject("timeout_after", 1, method="crm.item.update")

    with pytest.raises(RetryLater):
        crm.send_message(message, idempotency_key="m-lost")
    crm.send_message(message, idempotency_key="m-lost")

    assert _sent(fake, deal) == ["Ждём вас"]
    assert len(fake.calls("crm.item.update")) == 1


@pytest.mark.parametrize("field", ["UF_CRM_NOPE", "TITLE", " "])
def test_a_field_the_portal_lacks_is_named_and_nothing_is_written(
    fake: FakeBitrix24, crm: Bitrix24Client, field: str
) -> None:
    deal = int(fake.new_deal("Орлов В. Н.")["id"])

    with pytest.raises(Rejected) as exc:
        crm.send_message(OutgoingMessage(str(deal), "Ждём вас", field), idempotency_key="m-bad")

    assert exc.value.path == "text_field_id"
    assert fake.calls("crm.item.update") == []
