"""The CRM contract on Bitrix24Client against the stateful fake portal (tests/support/fake_bitrix24.py).

The client runs with the real leaky-bucket limiter on the test Redis; the world writes the fake's state
directly and reads it back the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import pytest

from connectors.base import CrmClient
from connectors.bitrix24.client import Bitrix24Client
from connectors.types import FieldValue, StageRef
from tests.contract.crm_contract import CrmContract, WorldFile, WorldTask
from tests.support.fake_bitrix24 import FakeBitrix24


class B24World:
    open_stage = StageRef("0", "NEW")
    next_stage = StageRef("0", "PREPARATION")
    other_pipeline_stage = StageRef("1", "C1:NEW")
    won_stage = StageRef("0", "WON")
    lost_stage = StageRef("0", "LOSE")
    text_field = "UF_CRM_TEXT"
    number_field = "UF_CRM_NUMBER"
    flag_field = "UF_CRM_FLAG"
    date_field = "UF_CRM_DATE"
    multi_field = "UF_CRM_MULTI"
    multi_options = ("41", "42", "43")
    message_bot_id = None
    tag_field_id = "UF_CRM_TAGS"

    def __init__(self, fake: FakeBitrix24) -> None:
        self.fake = fake
        # Deals have no tags on Bitrix24: the portal keeps them in a multiple string field like this one.
        fake.fields[self.tag_field_id] = {"type": "string", "isMultiple": True, "title": "Теги"}

    def make_user(self, name: str, *, active: bool = True) -> str:
        return str(self.fake.new_user(name, active=active)["ID"])

    def make_deal(
        self,
        name: str,
        stage: StageRef | None = None,
        *,
        fields: Mapping[str, FieldValue] | None = None,
        responsible_user_id: str | None = None,
    ) -> str:
        stage = stage or self.open_stage
        deal = self.fake.new_deal(name, int(stage.pipeline_id), stage.stage_id)
        for key, value in (fields or {}).items():
            raw = list(value) if isinstance(value, tuple) else value
            self.fake._set_uf(deal, key, raw.isoformat() if hasattr(raw, "isoformat") else raw)
        if isinstance((fields or {}).get(self.flag_field), bool):
            deal[self.flag_field] = "Y" if fields[self.flag_field] else "N"  # type: ignore[index]
        if responsible_user_id:
            deal["assignedById"] = int(responsible_user_id)
        return str(deal["id"])

    def make_contact(
        self, name: str, phones: tuple[str, ...], *, responsible_user_id: str | None = None
    ) -> str:
        return str(self.fake.new_contact(name, phones, responsible=int(responsible_user_id or 1))["ID"])

    def make_company(self, name: str, *, responsible_user_id: str | None = None) -> str:
        return str(self.fake.new_company(name, responsible=int(responsible_user_id or 1))["id"])

    def link(self, deal_id: str, contact_id: str, company_id: str | None = None) -> None:
        self.fake.link(int(deal_id), int(contact_id), int(company_id) if company_id else None)

    def responsible(self, entity: str, entity_id: str) -> str | None:
        if entity == "contact":
            return self.fake.contacts[int(entity_id)]["ASSIGNED_BY_ID"]
        return str(self.fake.companies[int(entity_id)]["assignedById"])

    def complete_task(self, deal_id: str, text: str) -> None:
        for task in self.fake.tasks.values():
            if f"D_{deal_id}" in task["ufCrmTask"] and task["title"] == text:
                task["status"] = "5"

    def company_notes(self, company_id: str) -> list[str]:
        return [
            c["COMMENT"]
            for _, c in sorted(self.fake.comments.items())
            if c["ENTITY_TYPE"] == "company" and c["ENTITY_ID"] == int(company_id)
        ]

    def notes(self, deal_id: str) -> list[str]:
        return [
            c["COMMENT"]
            for _, c in sorted(self.fake.comments.items())
            if c["ENTITY_TYPE"] == "deal" and c["ENTITY_ID"] == int(deal_id)
        ]

    def tasks(self, deal_id: str) -> list[WorldTask]:
        return [
            WorldTask(deal_id, t["responsibleId"], t["title"], datetime.fromisoformat(t["deadline"]))
            for _, t in sorted(self.fake.tasks.items())
            if f"D_{deal_id}" in t["ufCrmTask"]
        ]

    def files(self, deal_id: str) -> list[WorldFile]:
        folders = {fid for fid, f in self.fake.folders.items() if f["NAME"].endswith(f" {deal_id}")}
        return [
            WorldFile(deal_id, f["NAME"], f["mime"], f["data"])
            for _, f in sorted(self.fake.files.items())
            if f["folder"] in folders
        ]

    def notifications(self, user_id: str) -> list[str]:
        return list(self.fake.notifications.get(int(user_id), {}).values())

    def loss_reason(self, deal_id: str) -> str | None:
        return self.fake.deals[int(deal_id)].get("UF_CRM_CB_LOSS_REASON")

    def messages(self, deal_id: str) -> list[str]:
        return [v for d, k, v in self.fake.field_changes if d == int(deal_id) and k == self.text_field]

    def deal_tags(self, deal_id: str) -> list[str]:
        return list(self.fake.deals[int(deal_id)].get(self.tag_field_id) or [])

    def set_deal_tags(self, deal_id: str, tags: list[str]) -> None:
        self.fake.deals[int(deal_id)][self.tag_field_id] = list(tags)


@pytest.fixture
def crm_world(fake: FakeBitrix24) -> B24World:
    return B24World(fake)


class TestBitrix24Contract(CrmContract):
    pass


def test_bitrix24_client_is_a_crm_client(crm: Bitrix24Client) -> None:
    assert isinstance(crm, CrmClient)
