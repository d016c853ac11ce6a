"""`link_contact` on amoCRM: `POST /api/v4/leads/{id}/link` as documented (research/amocrm.md §5.3), the
answer from tests/fixtures/amocrm/api/leads_link.json; an unknown lead is a 404 naming `deal_id`."""

from __future__ import annotations

import pytest
import responses

from connectors.errors import Rejected
from tests.connectors.amocrm.test_client import BASE, make_client
from tests.support.fake_amocrm import load_fixture


def test_link_contact_posts_one_contacts_link_to_the_lead() -> None:
    with responses.RequestsMock() as rsps:
        call = rsps.post(
            f"{BASE}/api/v4/leads/19619/link",
            json=load_fixture("api/leads_link.json"),
            match=[
                responses.matchers.json_params_matcher(
                    [{"to_entity_id": 7143600, "to_entity_type": "contacts"}]
                ),
                responses.matchers.header_matcher({"Authorization": "Bearer access-1"}),
            ],
        )
        make_client().link_contact("19619", "7143600")
    assert call.call_count == 1


def test_link_contact_on_an_unknown_lead_names_deal_id() -> None:
    with responses.RequestsMock() as rsps:
        rsps.post(
            f"{BASE}/api/v4/leads/404404/link",
            json=load_fixture("errors/not_found__404.json"),
            status=404,
            content_type="application/problem+json",
        )
        with pytest.raises(Rejected) as exc:
            make_client().link_contact("404404", "7143600")
    assert (exc.value.status, exc.value.path) == (404, "deal_id")


def test_link_contact_refuses_an_id_that_is_not_a_number_before_any_request() -> None:
    with responses.RequestsMock():
        with pytest.raises(Rejected) as exc:
            make_client().link_contact("19619", "Петрова")
    assert exc.value.path == "contact_id"
