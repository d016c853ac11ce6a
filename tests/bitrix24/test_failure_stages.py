"""`failure_stages` on Bitrix24: per deal category (`crm.category.list`), the stages `crm.status.list` marks
with SEMANTICS "F", the only ones a deal is closed in with a loss reason (answered as the recorded
methods/crm.category.list.json and methods/crm.status.list.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from connectors.bitrix24.client import Bitrix24Client
from connectors.errors import Rejected
from connectors.types import NewDeal, StageRef
from tests.support.fake_bitrix24 import FakeBitrix24

from .conftest import make_client

METHODS = Path(__file__).resolve().parents[1] / "fixtures/bitrix24/methods"


def test_failure_stages_read_the_recorded_answers(redis_client) -> None:  # type: ignore[no-untyped-def]
    categories = json.loads((METHODS / "crm.category.list.json").read_text("utf-8"))
    statuses = json.loads((METHODS / "crm.status.list.json").read_text("utf-8"))
    body = categories["body"]
    # The recorded stage list is category 1's («Стационар»): only that category is offered here.
    body["result"]["categories"] = [c for c in body["result"]["categories"] if c["id"] == 1]
    with responses.RequestsMock() as rsps:
        fake = FakeBitrix24(None)
        rsps.post(
            f"{fake.client_endpoint}crm.category.list",
            json=body,
            match=[responses.matchers.json_params_matcher(categories["params"])],
        )
        listed = rsps.post(
            f"{fake.client_endpoint}crm.status.list",
            json=statuses["body"],
            match=[responses.matchers.json_params_matcher(statuses["params"])],
        )
        client, _ = make_client(fake, redis_client)
        assert client.failure_stages() == {"1": ["C1:LOSE"]}
    assert listed.call_count == 1


def test_a_failure_stage_is_one_move_deal_closes_with_a_reason(
    fake: FakeBitrix24, crm: Bitrix24Client
) -> None:
    failures = crm.failure_stages()
    assert failures == {"0": ["LOSE"], "1": ["C1:LOSE"]}
    deal = crm.create_deal(NewDeal(name="Орлов", stage=StageRef("0", "NEW")), idempotency_key="f-1")
    crm.move_deal(deal.id, StageRef("1", failures["1"][0]), loss_reason="Дорого")
    assert crm.get_deal(deal.id).loss_reason == "Дорого"
    with pytest.raises(Rejected) as refused:
        crm.move_deal(deal.id, StageRef("1", "C1:WON"), loss_reason="Дорого")
    assert refused.value.path == "loss_reason"
