"""`link_contact` on Bitrix24: the deal read (answered as methods/crm.item.get.json), then, unless its
`contactIds` hold the contact already, `crm.deal.contact.add` with the deal's `id` and `fields.CONTACT_ID`
(answered as methods/crm.deal.contact.add.json); the primary contact stays; twice adds once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from connectors.bitrix24.client import Bitrix24Client
from connectors.errors import Rejected
from tests.support.fake_bitrix24 import FakeBitrix24

from .fixture_world import standard_world

METHODS = Path(__file__).resolve().parents[1] / "fixtures/bitrix24/methods"
ADD, GET = METHODS / "crm.deal.contact.add.json", METHODS / "crm.item.get.json"


def test_link_contact_sends_the_documented_call_once(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    recorded = json.loads(ADD.read_text("utf-8"))
    ids = standard_world(fake)
    other = int(fake.new_contact("Петрова Ольга", ("+7 916 765-43-21",))["ID"])

    crm.link_contact(str(ids["deal"]), str(other))
    crm.link_contact(str(ids["deal"]), str(other))  # a retried job: read, found, not sent again

    sent = [params for method, params in fake.log if method == "crm.deal.contact.add"]
    assert sent == [{"id": ids["deal"], "fields": {"CONTACT_ID": other}}]
    assert set(sent[0]) == set(recorded["params"]) and set(sent[0]["fields"]) == set(
        recorded["params"]["fields"]
    )
    assert fake.deals[ids["deal"]]["contactIds"] == [ids["contact"], other]


@pytest.mark.parametrize(("linked", "adds"), [([], 1), ([103], 0)])
def test_link_contact_reads_the_recorded_answers(redis_client, linked, adds) -> None:  # type: ignore[no-untyped-def]
    from .conftest import make_client

    deal = json.loads(GET.read_text("utf-8"))["body"]
    deal["result"]["item"]["contactIds"] = linked
    recorded = json.loads(ADD.read_text("utf-8"))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeBitrix24(None)
        rsps.post(f"{fake.client_endpoint}crm.item.get", json=deal)
        add = rsps.post(
            f"{fake.client_endpoint}crm.deal.contact.add",
            json=recorded["body"],
            match=[responses.matchers.json_params_matcher(recorded["params"])],
        )
        client, _ = make_client(fake, redis_client)
        client.link_contact("102", "103")
    assert add.call_count == adds


def test_link_contact_on_an_unknown_deal_names_deal_id(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    ids = standard_world(fake)
    with pytest.raises(Rejected) as exc:
        crm.link_contact("999999", str(ids["contact"]))
    assert (exc.value.status, exc.value.path) == (404, "deal_id")
