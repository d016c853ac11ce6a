"""The CRM contract on AmoCrmClient against the stateful v4 fake (tests/support/fake_amocrm/).

The fake enforces 7 requests per second, so the client runs with the real `amo_limiter` on the test
Redis, as in production; the world writes the fake's state directly and reads it back the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import redis
import responses

from connectors.amocrm.client import AmoCrmClient
from connectors.amocrm.limits import amo_http, amo_limiter
from connectors.base import CrmClient
from connectors.types import FieldValue, OAuthToken, StageRef
from tests.contract.crm_contract import CrmContract, WorldFile, WorldTask
from tests.support.fake_amocrm import FakeAmo
from tests.support.tokens import MemoryTokens

MSK = ZoneInfo("Europe/Moscow")
_names = itertools.count(1)


class AmoWorld:
    open_stage = StageRef("3177727", "32392156")
    next_stage = StageRef("3177727", "32392159")
    other_pipeline_stage = StageRef("3177730", "32392170")
    won_stage = StageRef("3177727", "142")
    lost_stage = StageRef("3177727", "143")
    text_field = "1001"
    number_field = "1002"
    flag_field = "1003"
    date_field = "1004"
    multi_field = "1005"
    multi_options = ("5001", "5002", "5003")
    message_bot_id = "36143"
    tag_field_id = None

    def __init__(self, fake: FakeAmo) -> None:
        self.fake = fake

    def make_user(self, name: str, *, active: bool = True) -> str:
        return str(self.fake.new_user(name, active=active)["id"])

    def make_deal(
        self,
        name: str,
        stage: StageRef | None = None,
        *,
        fields: Mapping[str, FieldValue] | None = None,
        responsible_user_id: str | None = None,
    ) -> str:
        stage = stage or self.open_stage
        lead = self.fake.new_lead(
            name,
            int(stage.pipeline_id),
            int(stage.stage_id),
            responsible=int(responsible_user_id) if responsible_user_id else None,
            fields=self.fake.encode_fields(fields or {}),
        )
        return str(lead["id"])

    def make_contact(
        self, name: str, phones: tuple[str, ...], *, responsible_user_id: str | None = None
    ) -> str:
        item: dict[str, object] = {
            "name": name,
            "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": p} for p in phones]}]
            if phones
            else [],
        }
        if responsible_user_id:
            item["responsible_user_id"] = int(responsible_user_id)
        return str(self.fake._new_contact(item, "0")["id"])

    def make_company(self, name: str, *, responsible_user_id: str | None = None) -> str:
        responsible = int(responsible_user_id) if responsible_user_id else None
        return str(self.fake.new_company(name, responsible=responsible)["id"])

    def link(self, deal_id: str, contact_id: str, company_id: str | None = None) -> None:
        company = int(company_id) if company_id else None
        self.fake.link(int(deal_id), contact=int(contact_id), company=company)

    def responsible(self, entity: str, entity_id: str) -> str | None:
        store = {"contact": self.fake.contacts, "company": self.fake.companies}[entity]
        return str(store[int(entity_id)]["responsible_user_id"])

    def complete_task(self, deal_id: str, text: str) -> None:
        for task in self.fake.tasks.values():
            if task["entity_id"] == int(deal_id) and task["text"] == text:
                task["is_completed"] = True

    def company_notes(self, company_id: str) -> list[str]:
        return [
            n["params"]["text"]
            for _, n in sorted(self.fake.notes.items())
            if n.get("__entity") == "companies" and n["entity_id"] == int(company_id)
        ]

    def notes(self, deal_id: str) -> list[str]:
        return [
            n["params"]["text"]
            for _, n in sorted(self.fake.notes.items())
            if n["entity_id"] == int(deal_id)
            and n.get("__entity", "leads") == "leads"
            and n["note_type"] == "extended_service_message"
        ]

    def tasks(self, deal_id: str) -> list[WorldTask]:
        return [
            WorldTask(
                deal_id,
                str(t["responsible_user_id"]),
                t["text"],
                datetime.fromtimestamp(t["complete_till"], MSK),
            )
            for _, t in sorted(self.fake.tasks.items())
            if t["entity_id"] == int(deal_id)
        ]

    def files(self, deal_id: str) -> list[WorldFile]:
        out = []
        for _, n in sorted(self.fake.notes.items()):
            if n["entity_id"] == int(deal_id) and n["note_type"] == "attachment":
                f = self.fake.files[n["params"]["file_uuid"]]
                out.append(WorldFile(deal_id, n["params"]["file_name"], f["content_type"], f["data"]))
        return out

    def notifications(self, user_id: str) -> list[str]:
        return [
            t["text"]
            for _, t in sorted(self.fake.tasks.items())
            if t["entity_id"] is None and str(t["responsible_user_id"]) == user_id
        ]

    def loss_reason(self, deal_id: str) -> str | None:
        rid = self.fake.leads[int(deal_id)]["loss_reason_id"]
        return next((r["name"] for r in self.fake.loss_reasons if r["id"] == rid), None)

    def messages(self, deal_id: str) -> list[str]:
        # What the bot's {{lead.cf.<text field>}} read at each run on this lead.
        return [
            str(cf["values"][0]["value"])
            for run in self.fake.bot_runs
            if run["entity_type"] == 2 and run["entity_id"] == int(deal_id)
            for cf in run["fields"] or ()
            if str(cf["field_id"]) == self.text_field and cf.get("values")
        ]

    def deal_tags(self, deal_id: str) -> list[str]:
        return [t["name"] for t in self.fake.leads[int(deal_id)]["__tags"]]

    def set_deal_tags(self, deal_id: str, tags: list[str]) -> None:
        self.fake.leads[int(deal_id)]["__tags"] = [
            {"id": i + 1, "name": t, "color": None} for i, t in enumerate(tags)
        ]


@pytest.fixture
def fake() -> Iterator[FakeAmo]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeAmo(rsps)


@pytest.fixture
def crm(fake: FakeAmo, redis_client: redis.Redis) -> Iterator[AmoCrmClient]:
    limiter = amo_limiter(redis_client, account_id="29876543", rps=Decimal("7"), scope="account")
    with amo_http(name="amo:test", limiter=limiter) as http:
        yield AmoCrmClient(
            base_url=fake.base_url,
            tokens=MemoryTokens(OAuthToken("access-1", "refresh-1", None)),
            refresh=None,
            http=http,
            timezone="Europe/Moscow",
            reference_fields={"leads": "1009", "contacts": "2009"},
        )
    # The budget held: the platform never saw more than 7 in a second, and never answered 429.
    assert fake.throttled == 0
    assert fake.max_in_window(0.99) <= 7


@pytest.fixture
def crm_world(fake: FakeAmo) -> AmoWorld:
    return AmoWorld(fake)


class TestAmoContract(CrmContract):
    pass


def test_amo_client_is_a_crm_client(crm: AmoCrmClient) -> None:
    assert isinstance(crm, CrmClient)
