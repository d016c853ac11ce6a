"""Bitrix24Client.add_deal_tag: deals have no tags there, so a tag is a value of the mapped multiple string
field (`tag_field_id`), appended to the values the deal has (`crm.item.get`, then `crm.item.update`)."""

from __future__ import annotations

import pytest

from connectors.bitrix24.client import Bitrix24Client
from connectors.errors import Rejected
from tests.support.fake_bitrix24 import FakeBitrix24

TAGS = "UF_CRM_TAGS"


@pytest.fixture
def tagged(fake: FakeBitrix24) -> int:
    fake.fields[TAGS] = {"type": "string", "isMultiple": True, "title": "Теги"}
    deal = int(fake.new_deal("Орлов В. Н.")["id"])
    fake.deals[deal][TAGS] = ["VIP", "Сайт"]
    return deal


def test_the_tag_is_appended_to_the_values_the_deal_has(
    fake: FakeBitrix24, crm: Bitrix24Client, tagged: int
) -> None:
    crm.add_deal_tag(str(tagged), "Комплексное лечение", tag_field_id=TAGS)
    crm.add_deal_tag(str(tagged), "Комплексное лечение", tag_field_id=TAGS)

    [update] = fake.calls("crm.item.update")
    assert update["fields"] == {TAGS: ["VIP", "Сайт", "Комплексное лечение"]}
    assert fake.deals[tagged][TAGS] == ["VIP", "Сайт", "Комплексное лечение"]


@pytest.mark.parametrize(
    ("field", "why"),
    [(None, "have no tags"), ("UF_CRM_NOPE", "not a deal field"), ("UF_CRM_TEXT", "multiple string")],
    ids=["unmapped", "unknown", "single value"],
)
def test_a_wrong_or_missing_field_is_named_and_nothing_is_written(
    fake: FakeBitrix24, crm: Bitrix24Client, tagged: int, field: str | None, why: str
) -> None:
    with pytest.raises(Rejected) as exc:
        crm.add_deal_tag(str(tagged), "Комплексное лечение", tag_field_id=field)

    assert exc.value.path == "tag_field_id" and why in str(exc.value)
    assert fake.calls("crm.item.update") == []
    assert fake.deals[tagged][TAGS] == ["VIP", "Сайт"]
