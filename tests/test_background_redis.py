"""A web worker's deferred Redis writes: outbox wake-ups leave the request for the worker's background
thread, arrive all the same, and a failing Redis costs only the wake-up (the sweep still finds the row)."""

from __future__ import annotations

import time

import pytest
import redis

from connectors.types import NewDeal, StageRef
from widget_server import background_redis
from widget_server.jobs.periodic import sweep_outbox
from widget_server.outbox import DRAIN_FLAG, WAKE_LIST
from widget_server.sandbox.crm import SandboxCrm


@pytest.fixture
def deal_id(rt, portal) -> str:
    crm = SandboxCrm(rt.db, portal.id, timezone=portal.timezone)
    return crm.create_deal(
        NewDeal(name="Петров П. П.", stage=StageRef("1", "in_stay")), idempotency_key="d"
    ).id


def note(admin, deal_id: str, text: str) -> int:
    response = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": text})
    assert response.status_code == 202
    return response.get_json()["id"]


def test_a_deferred_wake_up_waits_for_the_flush_and_then_queues_one_drain(admin, deal_id, rt, deferred_redis):
    ids = [note(admin, deal_id, f"n{n}") for n in range(3)]
    assert rt.redis.llen(WAKE_LIST) == 0  # the requests did not talk to Redis for it
    assert rt.queue("crm").count == 0

    background_redis.flush_now()

    assert [int(x) for x in rt.redis.lrange(WAKE_LIST, 0, -1)] == ids
    assert [job.func_name for job in rt.queue("crm").jobs] == ["widget_server.jobs.mirror.drain_outbox_wakes"]
    background_redis.flush_now()  # nothing left: no second push, no second drain
    assert rt.redis.llen(WAKE_LIST) == 3 and rt.queue("crm").count == 1


def test_the_sweep_is_never_deferred(admin, deal_id, rt, deferred_redis):
    job_id = note(admin, deal_id, "n")
    rt.redis.set(DRAIN_FLAG, "1")  # a drain that was lost with its queue
    sweep_outbox()
    # Inline, and with a drain queued despite the flag: the sweep is the recovery path.
    assert [int(x) for x in rt.redis.lrange(WAKE_LIST, 0, -1)] == [job_id]
    assert rt.queue("crm").count == 1


def test_a_flush_that_cannot_reach_redis_loses_only_the_wake_up(
    admin, deal_id, rt, deferred_redis, monkeypatch, caplog
):
    job_id = note(admin, deal_id, "n")

    def down(*_args, **_kwargs):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(rt.redis, "evalsha", down)
    background_redis.flush_now()  # logged, not raised: the other flushes still run
    assert "background Redis flush" in caplog.text
    monkeypatch.undo()
    monkeypatch.setattr(background_redis, "_thread", None)

    assert rt.redis.llen(WAKE_LIST) == 0
    sweep_outbox()
    assert [int(x) for x in rt.redis.lrange(WAKE_LIST, 0, -1)] == [job_id]


def test_the_thread_sends_what_requests_hand_it_and_stop_sends_the_rest(admin, deal_id, rt):
    background_redis.start(interval_s=0.001)
    try:
        assert background_redis.running()
        first = note(admin, deal_id, "n1")
        deadline = time.monotonic() + 5
        while rt.redis.llen(WAKE_LIST) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert [int(x) for x in rt.redis.lrange(WAKE_LIST, 0, -1)] == [first]
    finally:
        background_redis.stop()
    assert not background_redis.running()
    second = note(admin, deal_id, "n2")  # inline again once stopped
    assert [int(x) for x in rt.redis.lrange(WAKE_LIST, 0, -1)] == [first, second]


def test_stop_flushes_what_the_thread_had_not_sent(monkeypatch):
    sent: list[str] = []
    pending = ["wake-up"]

    def flush() -> None:
        sent.extend(pending)
        pending.clear()

    monkeypatch.setattr(background_redis, "_flushes", [flush])
    monkeypatch.setattr(background_redis, "_thread", None)
    background_redis.start(interval_s=60)  # would not flush again for a minute
    background_redis.stop()
    assert sent == ["wake-up"]
