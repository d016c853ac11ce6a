"""AmoCrmClient.get_deal carries the lead's own loss reason by name (`with=loss_reason` embeds it beside
`loss_reason_id`), which the journey reads when a portal keeps reasons there instead of a custom field."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from tests.connectors.amocrm.test_client import make_client
from tests.connectors.amocrm.test_contract import AmoWorld
from tests.support.fake_amocrm import FakeAmo


@pytest.fixture
def fake() -> Iterator[FakeAmo]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeAmo(rsps, rate_limit=None)


def test_a_lost_lead_reads_back_its_reason(fake: FakeAmo) -> None:
    world = AmoWorld(fake)
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")
    assert crm.get_deal(deal_id).loss_reason is None

    crm.move_deal(deal_id, world.lost_stage, loss_reason="Дорого")

    assert crm.get_deal(deal_id).loss_reason == "Дорого"
    [(_, url, _)] = [c for c in fake.calls("GET", rf"/api/v4/leads/{deal_id}")][-1:]
    assert "loss_reason" in url
