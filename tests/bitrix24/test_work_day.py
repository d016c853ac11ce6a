"""Bitrix24's work day (`timeman.status`) as operators' shift states: one batch for many users, each
documented STATUS mapped, a user the portal will not report on left out."""

from __future__ import annotations

from connectors.base import WorkDaySource
from connectors.bitrix24.client import Bitrix24Client
from tests.support.fake_bitrix24 import FakeBitrix24


def test_work_day_states_map_every_status_in_one_batch(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    users = {status: fake.new_user(f"Оператор {status}")["ID"] for status in ("OPENED", "PAUSED", "EXPIRED")}
    closed = fake.new_user("Оператор CLOSED")["ID"]
    for status, uid in users.items():
        fake.work_days[int(uid)] = status

    states = crm.work_day_states([*users.values(), closed, "987654321"])

    assert states == {
        users["OPENED"]: "on_shift",
        users["PAUSED"]: "paused",
        users["EXPIRED"]: "off",  # opened on an earlier day and never closed
        closed: "off",
    }
    [batch] = fake.calls("batch")
    assert sorted(line.split("?")[0] for line in batch["cmd"].values()) == ["timeman.status"] * 5


def test_bitrix24_is_a_work_day_source(crm: Bitrix24Client) -> None:
    assert isinstance(crm, WorkDaySource)
