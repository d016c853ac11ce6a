"""The API's per-credential budget: a sliding-window counter in Redis, decided inline by one script, or in
a web worker from the totals its background flush brings back (every process's admissions count)."""

from __future__ import annotations

import time

import pytest
import redis

from widget_server import api_throttle, background_redis
from widget_server.api_throttle import KEY_PREFIX, ApiThrottle

WINDOW_US = 1_000_000


def redis_window(client: redis.Redis) -> tuple[int, float]:
    seconds, micros = client.time()
    now = seconds * 1_000_000 + micros
    return now // WINDOW_US, (now % WINDOW_US) / WINDOW_US


class Clock:
    """Microseconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000_000_000

    def __call__(self) -> int:
        return self.now


def test_inline_admits_exactly_the_limit_then_names_a_wait_within_the_window(redis_client):
    throttle = ApiThrottle(redis_client)
    waits = [throttle.admit("1:apikey:7", 3) for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert all(0 < wait <= 1.0 for wait in waits[3:])
    window, _ = redis_window(redis_client)
    counts = {int(k): int(v) for k, v in redis_client.hgetall(KEY_PREFIX + "1:apikey:7").items()}
    assert sum(counts.values()) == 3 and max(counts) in (window, window - 1)
    assert 0 < redis_client.pttl(KEY_PREFIX + "1:apikey:7") <= 3000  # idle credentials vanish


def test_inline_weighs_the_previous_window_by_its_overlap(redis_client):
    window, elapsed = redis_window(redis_client)
    if elapsed > 0.8:  # keep the whole test inside one window
        time.sleep(1.01 - elapsed)
        window, elapsed = redis_window(redis_client)
    redis_client.hset(KEY_PREFIX + "c", str(window), 0)
    redis_client.hset(KEY_PREFIX + "c", str(window - 1), 10)
    throttle = ApiThrottle(redis_client)
    # 10 × (1 − elapsed) of the last second's requests still count against a limit of 10.
    admitted = 0
    while throttle.admit("c", 10) == 0:
        admitted += 1
        assert admitted <= 10
    assert admitted == pytest.approx(10 - 10 * (1 - elapsed), abs=1.5)


def test_credentials_have_budgets_of_their_own(redis_client):
    throttle = ApiThrottle(redis_client)
    assert throttle.admit("1:apikey:1", 1) == 0
    assert throttle.admit("1:apikey:1", 1) > 0
    assert throttle.admit("1:apikey:2", 1) == 0
    assert throttle.admit("2:user:5", 1) == 0  # the same CRM user id in another portal
    assert throttle.admit("3:user:5", 1) == 0


def test_deferred_decides_without_redis_and_the_flush_counts_every_admission(redis_client, deferred_redis):
    throttle = ApiThrottle(redis_client, clock_us=Clock())
    calls: list[str] = []
    redis_client.evalsha = _spy(redis_client.evalsha, calls)
    assert [throttle.admit("k", 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert throttle.admit("k", 3) > 0  # refused locally: its own three are counted before any flush
    assert calls == []
    throttle.flush()
    assert calls  # one script call (plus loading the script into this fresh Redis)
    assert sum(int(v) for v in redis_client.hgetall(KEY_PREFIX + "k").values()) == 3


def test_deferred_processes_learn_each_others_admissions_at_their_next_flush(redis_client, deferred_redis):
    first, second = (ApiThrottle(redis_client, clock_us=Clock()) for _ in range(2))
    for _ in range(4):
        assert first.admit("k", 5) == 0
    first.flush()
    assert second.admit("k", 5) == 0  # the second process knows nothing yet: this is the overshoot bound
    second.flush()  # …and learns the totals with its own count
    assert second.admit("k", 5) > 0
    assert sum(int(v) for v in redis_client.hgetall(KEY_PREFIX + "k").values()) == 5


def test_deferred_counts_in_flight_admissions_until_the_flush_brings_them_back(redis_client, deferred_redis):
    throttle = ApiThrottle(redis_client, clock_us=Clock())
    assert throttle.admit("k", 2) == 0
    original = throttle._sync_script

    def slow_sync(*args, **kwargs):
        # While this process's count is on its way, a request must still see it.
        assert throttle.admit("k", 2) == 0
        assert throttle.admit("k", 2) > 0
        return original(*args, **kwargs)

    throttle._sync_script = slow_sync
    throttle.flush()
    throttle._sync_script = original
    throttle.flush()
    assert sum(int(v) for v in redis_client.hgetall(KEY_PREFIX + "k").values()) == 2
    assert throttle.admit("k", 2) > 0


def test_deferred_budget_recovers_as_the_window_slides(redis_client, deferred_redis):
    clock = Clock()
    throttle = ApiThrottle(redis_client, clock_us=clock)
    throttle.flush()  # nothing pending: no round trip, the offset stays 0
    admitted = sum(1 for _ in range(20) if throttle.admit("k", 10) == 0)
    assert admitted == 10
    throttle.flush()
    clock.now += 2 * WINDOW_US  # two windows later nothing of that burst counts
    assert sum(1 for _ in range(20) if throttle.admit("k", 10) == 0) == 10


def test_a_failed_flush_forgets_the_batch_and_raises(redis_client, deferred_redis):
    throttle = ApiThrottle(redis_client, clock_us=Clock())
    assert throttle.admit("k", 1) == 0

    def down(*_args, **_kwargs):
        raise redis.ConnectionError("Redis is down")

    throttle._sync_script = down
    with pytest.raises(redis.ConnectionError):
        throttle.flush()
    # The lost count only makes the budget more lenient for a moment; nothing is left half-sent.
    assert throttle._in_flight == {} and throttle._pending == {}


def test_the_web_worker_flush_sends_every_throttle(redis_client, deferred_redis):
    throttle = api_throttle.throttle_for(redis_client)
    assert api_throttle.throttle_for(redis_client) is throttle
    assert throttle.admit("1:apikey:9", 100) == 0
    background_redis.flush_now()
    assert sum(int(v) for v in redis_client.hgetall(KEY_PREFIX + "1:apikey:9").values()) == 1


def _spy(function, calls: list[str]):
    def spy(*args, **kwargs):
        calls.append(args[0])
        return function(*args, **kwargs)

    return spy


def test_both_ways_drop_windows_that_no_longer_count(redis_client, request):
    window, _ = redis_window(redis_client)
    for credential in ("inline", "flushed"):
        redis_client.hset(KEY_PREFIX + credential, mapping={str(window - 5): 40, str(window - 9): 7})
    throttle = ApiThrottle(redis_client)
    assert throttle.admit("inline", 10) == 0
    request.getfixturevalue("deferred_redis")  # from here on, as in a web worker
    assert throttle.admit("flushed", 10) == 0
    throttle.flush()
    for credential in ("inline", "flushed"):
        fields = {int(k) for k in redis_client.hkeys(KEY_PREFIX + credential)}
        assert fields and all(field >= window - 1 for field in fields), (credential, fields)
