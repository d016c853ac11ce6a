"""What the journey asks of amoCRM beyond the base verbs: add_deal_tag by `tags_to_add` on
`PATCH /api/v4/leads`, never `_embedded.tags` (which replaces every tag the lead has), and a lost lead's own
reason read back by name through get_deal (`with=loss_reason` embeds it beside `loss_reason_id`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from connectors.errors import Rejected
from tests.connectors.amocrm.test_client import make_client
from tests.connectors.amocrm.test_contract import AmoWorld
from tests.support.fake_amocrm import FakeAmo, load_fixture


@pytest.fixture
def fake() -> Iterator[FakeAmo]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeAmo(rsps, rate_limit=None)


def test_the_tag_is_added_by_name_and_the_others_stay(fake: FakeAmo) -> None:
    world = AmoWorld(fake)
    deal_id = world.make_deal("Орлов В. Н.")
    world.set_deal_tags(deal_id, ["VIP", "Сайт"])

    make_client().add_deal_tag(deal_id, "Комплексное лечение")

    [(_, _, body)] = fake.calls("PATCH", "/api/v4/leads")
    documented = load_fixture("api/leads_patch__tags_to_add.json")
    assert [sorted(item) for item in body] == [sorted(item) for item in documented]
    assert body == [{"id": int(deal_id), "tags_to_add": [{"name": "Комплексное лечение"}]}]
    assert "_embedded" not in body[0]
    assert world.deal_tags(deal_id) == ["VIP", "Сайт", "Комплексное лечение"]


def test_a_blank_tag_sends_nothing(fake: FakeAmo) -> None:
    deal_id = AmoWorld(fake).make_deal("Орлов В. Н.")

    with pytest.raises(Rejected) as exc:
        make_client().add_deal_tag(deal_id, " ")

    assert exc.value.path == "tag"
    assert fake.calls("PATCH", "/api/v4/leads") == []


def test_a_lost_lead_reads_back_its_reason(fake: FakeAmo) -> None:
    world = AmoWorld(fake)
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")
    assert crm.get_deal(deal_id).loss_reason is None

    crm.move_deal(deal_id, world.lost_stage, loss_reason="Дорого")

    assert crm.get_deal(deal_id).loss_reason == "Дорого"
    [(_, url, _)] = fake.calls("GET", rf"/api/v4/leads/{deal_id}")[-1:]
    assert "loss_reason" in url
