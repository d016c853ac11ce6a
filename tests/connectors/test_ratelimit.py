"""RedisRateLimiter against a real Redis, including two OS processes sharing one budget."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fakeredis
import pytest
import redis

from connectors.errors import RetryLater
from connectors.ratelimit import KEY_PREFIX, NullRateLimiter, RateLimiter, RedisRateLimiter

ROOT = Path(__file__).resolve().parents[2]


# -- single process ---------------------------------------------------------------------------------


def test_admits_exactly_limit_then_gives_positive_wait(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, "portal-a", limit=3, window_s=0.5)

    assert [limiter.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.try_acquire()

    assert 0 < wait <= 0.5
    # A refused attempt must not use up a slot.
    assert redis_client.zcard(f"{KEY_PREFIX}portal-a") == 3


def test_acquire_waits_out_the_window(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, "portal-a", limit=2, window_s=0.2)

    assert limiter.acquire() == pytest.approx(0.0, abs=0.05)
    limiter.acquire()
    waited = limiter.acquire(timeout=5)

    assert waited > 0
    # Admitted only once older admissions had aged out of the window.
    assert 1 <= redis_client.zcard(f"{KEY_PREFIX}portal-a") <= 2


def test_acquire_fails_fast_when_the_slot_is_beyond_the_timeout(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, "portal-a", limit=1, window_s=30)
    limiter.acquire()
    started = time.monotonic()

    with pytest.raises(RetryLater) as caught:
        limiter.acquire(timeout=1)

    # Nothing is gained by sleeping out the timeout when the answer is already known.
    assert time.monotonic() - started < 0.5
    assert 29 < caught.value.retry_after <= 30


def test_timeout_zero_is_one_try(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, "portal-a", limit=1, window_s=5)

    assert limiter.acquire(timeout=0) == pytest.approx(0.0, abs=0.05)
    with pytest.raises(RetryLater):
        limiter.acquire(timeout=0)


def test_pause_blocks_every_limiter_on_the_key(redis_url: str, redis_client: redis.Redis) -> None:
    other_client = redis.Redis.from_url(redis_url)
    try:
        mine = RedisRateLimiter(redis_client, "portal-a", limit=100, window_s=1)
        theirs = RedisRateLimiter(other_client, "portal-a", limit=100, window_s=1)

        mine.pause(0.3)

        assert 0 < theirs.paused_for() <= 0.3
        assert 0 < theirs.try_acquire() <= 0.3
        assert mine.try_acquire() > 0
        assert theirs.acquire(timeout=2) > 0
        assert theirs.paused_for() == 0.0
    finally:
        other_client.close()


def test_pause_extends_but_never_shortens(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, "portal-a", limit=1)

    limiter.pause(5)
    limiter.pause(0.1)
    assert limiter.paused_for() > 4

    limiter.pause(9)
    assert limiter.paused_for() > 8


@pytest.mark.parametrize("seconds", [0, -3])
def test_pause_of_nothing_is_a_no_op(redis_client: redis.Redis, seconds: float) -> None:
    limiter = RedisRateLimiter(redis_client, "portal-a", limit=1)
    limiter.pause(seconds)
    assert limiter.paused_for() == 0.0
    assert limiter.try_acquire() == 0.0


def test_separate_keys_are_independent(redis_client: redis.Redis) -> None:
    a = RedisRateLimiter(redis_client, "portal-a", limit=2, window_s=5)
    b = RedisRateLimiter(redis_client, "portal-b", limit=2, window_s=5)

    assert [a.try_acquire() for _ in range(2)] == [0.0, 0.0]
    assert a.try_acquire() > 0
    a.pause(5)

    assert [b.try_acquire() for _ in range(2)] == [0.0, 0.0]
    assert b.paused_for() == 0.0


def test_keys_are_namespaced_and_expire(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, "amocrm:ip", limit=2, window_s=0.5)
    limiter.acquire()
    limiter.pause(2)

    window_ttl = redis_client.pttl("cb:ratelimit:amocrm:ip")
    pause_ttl = redis_client.pttl("cb:ratelimit:amocrm:ip:pause")

    assert 0 < window_ttl <= 1500
    assert 0 < pause_ttl <= 2000
    assert sorted(redis_client.keys("*")) == [b"cb:ratelimit:amocrm:ip", b"cb:ratelimit:amocrm:ip:pause"]


def test_reset_forgets_admissions_and_pause(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, "portal-a", limit=1, window_s=5)
    limiter.acquire()
    limiter.pause(5)

    limiter.reset()

    assert limiter.paused_for() == 0.0
    assert limiter.try_acquire() == 0.0


def test_works_on_fakeredis_too() -> None:
    # The README's no-Redis fallback runs on fakeredis[lua]; the script must stay within what it supports.
    client = fakeredis.FakeRedis()
    try:
        limiter = RedisRateLimiter(client, "portal-a", limit=2, window_s=0.2)
        assert [limiter.try_acquire() for _ in range(2)] == [0.0, 0.0]
        assert limiter.try_acquire() > 0
        assert limiter.acquire(timeout=2) > 0
        limiter.pause(1)
        assert limiter.paused_for() > 0.5
    finally:
        client.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit must be a positive integer, got 0"),
        ({"limit": -2}, "limit must be a positive integer, got -2"),
        ({"limit": 1.5}, "limit must be a positive integer, got 1.5"),
        ({"limit": True}, "limit must be a positive integer, got True"),
        ({"window_s": 0}, "window_s must be a positive number of seconds, got 0"),
        ({"window_s": -1.0}, "window_s must be a positive number of seconds, got -1.0"),
        ({"window_s": math.inf}, "window_s must be a positive number of seconds, got inf"),
        ({"window_s": math.nan}, "window_s must be a positive number of seconds, got nan"),
        ({"window_s": "1"}, "window_s must be a positive number of seconds, got '1'"),
        ({"window_s": 1e-9}, "window_s must be at least one microsecond, got 1e-09"),
        ({"key": ""}, "key must be a non-empty string, got ''"),
    ],
)
def test_constructor_validation_names_field_and_value(
    redis_client: redis.Redis, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"key": "portal-a", "limit": 5, "window_s": 1.0, **kwargs}
    with pytest.raises(ValueError) as caught:
        RedisRateLimiter(redis_client, **args)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_acquire_rejects_a_bad_timeout(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, "portal-a", limit=1)
    with pytest.raises(ValueError, match="timeout must be a non-negative number of seconds or None, got -1"):
        limiter.acquire(timeout=-1)


def test_null_limiter_admits_everything_and_records_pauses() -> None:
    limiter = NullRateLimiter()

    assert [limiter.acquire(timeout=0) for _ in range(100)] == [0.0] * 100
    assert limiter.try_acquire() == 0.0
    limiter.pause(3)

    assert limiter.paused_for() == 0.0
    assert limiter.pauses == [3]
    assert isinstance(limiter, RateLimiter)


# -- two processes ----------------------------------------------------------------------------------

LIMIT = 5
WINDOW_S = 0.5
PER_WORKER = 10
# Admission is decided in Redis, hits are timed at the server: a request admitted just after the window
# rolled can reach the server marginally earlier relative to its peers. Check a slightly smaller window.
SKEW_S = 0.05


def run_worker(redis_url: str, key: str, url: str, count: str, ready_key: str, go_key: str) -> None:
    """Entry point of a worker process: `count` GETs through PortalHttp with a Redis limiter on `key`."""
    from connectors.http import PortalHttp

    client = redis.Redis.from_url(redis_url)
    limiter = RedisRateLimiter(client, key, limit=LIMIT, window_s=WINDOW_S)
    with PortalHttp(name=f"worker:{key}", limiter=limiter) as http:
        # Start both workers together so they really compete for the budget.
        client.rpush(ready_key, 1)
        if client.blpop([go_key], timeout=20) is None:
            raise SystemExit("no go signal")
        for _ in range(int(count)):
            http.request("GET", url).raise_for_status()
    client.close()


class _Counter(BaseHTTPRequestHandler):
    hits: list[float]
    lock: threading.Lock

    def do_GET(self) -> None:
        with self.lock:
            self.hits.append(time.monotonic())
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def counter_server() -> Iterator[tuple[str, list[float]]]:
    hits: list[float] = []
    handler = type("Handler", (_Counter,), {"hits": hits, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/count", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _run_two_workers(redis_url: str, client: redis.Redis, url: str, keys: tuple[str, str], tag: str) -> None:
    ready_key, go_key = f"test:{tag}:ready", f"test:{tag}:go"
    code = "import sys; from tests.connectors.test_ratelimit import run_worker; run_worker(*sys.argv[1:])"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, redis_url, key, url, str(PER_WORKER), ready_key, go_key],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for key in keys
    ]
    try:
        deadline = time.monotonic() + 20
        while client.llen(ready_key) < len(procs):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), "a worker died while starting"
            time.sleep(0.01)
        client.rpush(go_key, *[1] * len(procs))
        for proc in procs:
            _out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _max_in_any_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_two_processes_share_one_budget(
    redis_url: str, redis_client: redis.Redis, counter_server: tuple[str, list[float]]
) -> None:
    url, hits = counter_server

    _run_two_workers(redis_url, redis_client, url, ("shared", "shared"), "shared")

    assert len(hits) == 2 * PER_WORKER
    assert _max_in_any_window(hits, WINDOW_S - SKEW_S) <= LIMIT


def test_control_two_processes_with_separate_budgets_break_the_cap(
    redis_url: str, redis_client: redis.Redis, counter_server: tuple[str, list[float]]
) -> None:
    # Same processes, same per-process limit, different keys: the cap is exceeded, so it is the shared
    # Redis budget, not anything per process, that held it in the test above.
    url, hits = counter_server

    _run_two_workers(redis_url, redis_client, url, ("solo-1", "solo-2"), "solo")

    assert len(hits) == 2 * PER_WORKER
    assert _max_in_any_window(hits, WINDOW_S - SKEW_S) > LIMIT
