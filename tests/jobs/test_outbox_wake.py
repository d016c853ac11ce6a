"""Coalesced wake-ups: committed outbox ids wait on one Redis list and one drain job at a time mirrors
them; pushes while a drain is pending queue nothing more, and nothing is stranded when a drain stands
down, dies or is lost."""

from __future__ import annotations

import pytest

from connectors.types import NewDeal, StageRef
from widget_server.jobs import mirror
from widget_server.jobs.periodic import sweep_outbox
from widget_server.outbox import DRAIN_FLAG, WAKE_LIST, wake_outbox_jobs
from widget_server.sandbox.crm import SandboxCrm


@pytest.fixture
def crm(rt, portal) -> SandboxCrm:
    return SandboxCrm(rt.db, portal.id, timezone=portal.timezone)


@pytest.fixture
def deal_id(crm) -> str:
    deal = NewDeal(name="Петров П. П.", stage=StageRef("1", "in_stay"))
    return crm.create_deal(deal, idempotency_key="d").id


def queued(rt) -> list[str]:
    return [job.func_name for job in rt.queue("crm").jobs]


def note(admin, deal_id: str, text: str) -> int:
    response = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": text})
    assert response.status_code == 202
    return response.get_json()["id"]


def test_many_commits_queue_one_drain_that_mirrors_them_all(admin, crm, deal_id, rt, jobs):
    ids = [note(admin, deal_id, f"n{n}") for n in range(5)]
    assert queued(rt) == ["widget_server.jobs.mirror.drain_outbox_wakes"]
    assert [int(x) for x in rt.redis.lrange(WAKE_LIST, 0, -1)] == ids
    jobs()
    assert crm.notes_for(deal_id) == [f"n{n}" for n in range(5)]
    assert rt.redis.llen(WAKE_LIST) == 0
    assert not rt.redis.exists(DRAIN_FLAG)
    note(admin, deal_id, "later")  # the flag is down again: the next commit queues a fresh drain
    assert queued(rt) == ["widget_server.jobs.mirror.drain_outbox_wakes"]


def test_ids_pushed_while_a_drain_runs_are_mirrored_by_it(admin, crm, deal_id, rt, jobs, monkeypatch):
    note(admin, deal_id, "first")
    second = note(admin, deal_id, "second")
    assert int(rt.redis.rpop(WAKE_LIST)) == second  # committed, but its wake-up comes only mid-drain
    real = mirror.mirror_outbox_jobs
    pushed: list[int] = []

    def mirror_and_push_once(ids: list[int]) -> str:
        if not pushed:
            pushed.append(second)
            wake_outbox_jobs([second])  # as another web process would, mid-drain: no second drain
            assert queued(rt) == []
        return real(ids)

    monkeypatch.setattr(mirror, "mirror_outbox_jobs", mirror_and_push_once)
    assert jobs() == 1

    assert crm.notes_for(deal_id) == ["first", "second"]
    assert not rt.redis.exists(DRAIN_FLAG)


def test_a_push_between_the_last_empty_pop_and_standing_down_is_not_stranded(
    admin, crm, deal_id, rt, jobs, monkeypatch
):
    job_id = note(admin, deal_id, "edge")
    rt.redis.delete(WAKE_LIST)  # the drain will find the list empty ...
    real_delete = rt.redis.delete
    raced: list[bool] = []

    def delete(*names):  # type: ignore[no-untyped-def]
        if DRAIN_FLAG in names and not raced:
            raced.append(True)
            wake_outbox_jobs([job_id])  # ... and a producer pushes just before it stands down
        return real_delete(*names)

    monkeypatch.setattr(rt.redis, "delete", delete)
    jobs()
    assert raced and crm.notes_for(deal_id) == ["edge"]
    assert rt.redis.llen(WAKE_LIST) == 0


def test_a_drain_that_fails_lowers_the_flag_and_the_next_commit_queues_another(
    admin, crm, deal_id, rt, jobs, monkeypatch
):
    note(admin, deal_id, "a")

    def broken(_ids: list[int]) -> str:
        raise RuntimeError("database went away")

    monkeypatch.setattr(mirror, "mirror_outbox_jobs", broken)
    jobs()
    assert not rt.redis.exists(DRAIN_FLAG)
    monkeypatch.undo()
    note(admin, deal_id, "b")
    assert queued(rt) == ["widget_server.jobs.mirror.drain_outbox_wakes"]
    jobs()
    assert crm.notes_for(deal_id) == ["b"]  # "a" was popped by the failed drain: the sweep brings it back
    assert sweep_outbox() == "woke 1"
    jobs()
    assert crm.notes_for(deal_id) == ["b", "a"]


def test_a_lost_drain_job_is_replaced_by_the_sweep_though_its_flag_is_still_up(admin, crm, deal_id, rt, jobs):
    note(admin, deal_id, "lost")
    rt.queue("crm").empty()  # the drain job is gone, its flag is not
    assert rt.redis.exists(DRAIN_FLAG)
    assert jobs() == 0
    assert sweep_outbox() == "woke 1"
    jobs()
    assert crm.notes_for(deal_id) == ["lost"]


def test_a_long_backlog_continues_in_a_fresh_drain(admin, crm, deal_id, rt, jobs, monkeypatch):
    for n in range(4):
        note(admin, deal_id, f"b{n}")
    monkeypatch.setattr(mirror, "DRAIN_BATCH", 1)
    monkeypatch.setattr(mirror, "DRAIN_BATCHES", 2)
    assert jobs() == 3  # 2 + 2 ids, then a drain that finds the list empty and stands down
    assert crm.notes_for(deal_id) == [f"b{n}" for n in range(4)]
    assert not rt.redis.exists(DRAIN_FLAG)
