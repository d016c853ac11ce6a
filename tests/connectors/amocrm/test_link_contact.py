"""`link_contact` on amoCRM: the lead is read with its contacts first (`GET /api/v4/leads/{id}?with=contacts`,
tests/fixtures/amocrm/api/leads_get__with_contacts.json, where lead 19619 has contact 7143599), and
`POST /api/v4/leads/{id}/link` (research/amocrm.md §5.3, answer api/leads_link.json) is sent only for a
contact not yet among `_embedded.contacts`: the docs do not say what linking a linked contact again does.
An unknown lead is a 404 naming `deal_id`."""

from __future__ import annotations

import pytest
import responses

from connectors.errors import Rejected
from tests.connectors.amocrm.test_client import BASE, make_client
from tests.support.fake_amocrm import load_fixture

LEAD = f"{BASE}/api/v4/leads/19619"


def _lead_read(rsps: responses.RequestsMock) -> responses.BaseResponse:
    return rsps.get(
        LEAD,
        json=load_fixture("api/leads_get__with_contacts.json"),
        match=[responses.matchers.query_param_matcher({"with": "contacts"})],
    )


def test_link_contact_reads_the_lead_then_posts_one_contacts_link() -> None:
    with responses.RequestsMock() as rsps:
        read = _lead_read(rsps)
        call = rsps.post(
            f"{LEAD}/link",
            json=load_fixture("api/leads_link.json"),
            match=[
                responses.matchers.json_params_matcher(
                    [{"to_entity_id": 7143600, "to_entity_type": "contacts"}]
                ),
                responses.matchers.header_matcher({"Authorization": "Bearer access-1"}),
            ],
        )
        make_client().link_contact("19619", "7143600")
    assert (read.call_count, call.call_count) == (1, 1)


def test_a_contact_already_on_the_lead_is_not_linked_again() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        read = _lead_read(rsps)
        post = rsps.post(f"{LEAD}/link", json=load_fixture("api/leads_link.json"))
        make_client().link_contact("19619", "7143599")
        make_client().link_contact("19619", "7143599")  # a retried outbox job: still no POST
        assert post.call_count == 0
    assert read.call_count == 2


def test_link_contact_on_an_unknown_lead_names_deal_id() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(
            f"{BASE}/api/v4/leads/404404",
            json=load_fixture("errors/not_found__404.json"),
            status=404,
            content_type="application/problem+json",
        )
        post = rsps.post(f"{BASE}/api/v4/leads/404404/link", json={})
        with pytest.raises(Rejected) as exc:
            make_client().link_contact("404404", "7143600")
        assert post.call_count == 0
    assert (exc.value.status, exc.value.path) == (404, "deal_id")


def test_an_empty_answer_for_the_lead_is_an_unknown_deal() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{BASE}/api/v4/leads/19620", status=204)
        with pytest.raises(Rejected) as exc:
            make_client().link_contact("19620", "7143600")
    assert (exc.value.status, exc.value.path) == (404, "deal_id")


def test_link_contact_refuses_an_id_that_is_not_a_number_before_any_request() -> None:
    with responses.RequestsMock():
        with pytest.raises(Rejected) as exc:
            make_client().link_contact("19619", "Петрова")
    assert exc.value.path == "contact_id"
