"""Figures for RedisRateLimiter: per-call overhead when admitted, and the cap held by two processes.

Run: .venv/bin/python bench/ratelimit_bench.py   (uses $REDIS_URL if set, else starts a private redis-server)
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import RedisProc, percentile

from connectors.ratelimit import RedisRateLimiter

__all__ = ["main"]

OVERHEAD_CALLS = 5000
RATE_LIMIT = 7
RATE_WINDOW_S = 1.0
PROCESSES = 2
CALLS_PER_PROCESS = 11  # 22 calls at 7/s: about 3 s


def bench_overhead(url: str) -> None:
    client = redis.Redis.from_url(url)
    # A limit no run can reach, so every call measures the admitted path.
    limiter = RedisRateLimiter(client, "bench:overhead", limit=10**9, window_s=1.0)
    limiter.acquire()  # load the script and open the connection outside the timing
    samples = []
    for _ in range(OVERHEAD_CALLS):
        started = time.perf_counter()
        limiter.acquire()
        samples.append((time.perf_counter() - started) * 1e6)
    limiter.reset()
    client.close()
    print(f"acquire() overhead, admitted, {OVERHEAD_CALLS} calls over loopback TCP:")
    print(
        f"  p50 {percentile(samples, 0.50):.0f} µs   p95 {percentile(samples, 0.95):.0f} µs   "
        f"mean {statistics.fmean(samples):.0f} µs   max {max(samples):.0f} µs"
    )


def _worker(url: str, key: str, calls: int, start_at: float, out: multiprocessing.Queue) -> None:
    client = redis.Redis.from_url(url)
    limiter = RedisRateLimiter(client, key, limit=RATE_LIMIT, window_s=RATE_WINDOW_S)
    client.ping()  # connect before the start line; a warm-up acquire would spend a slot
    time.sleep(max(0.0, start_at - time.time()))
    stamps = []
    for _ in range(calls):
        limiter.acquire(timeout=None)
        stamps.append(time.time())
    client.close()
    out.put(stamps)


def _max_in_window(stamps: list[float], window: float) -> int:
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def bench_two_processes(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    start_at = time.time() + 1.5  # leave time for both interpreters to start
    procs = [
        ctx.Process(target=_worker, args=(url, "bench:shared", CALLS_PER_PROCESS, start_at, out))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    stamps = sorted(stamp for _ in procs for stamp in out.get(timeout=60))
    for proc in procs:
        proc.join()
    total = len(stamps)
    span = stamps[-1] - stamps[0]
    limit = f"{RATE_LIMIT}/{RATE_WINDOW_S:g} s"
    print(f"{PROCESSES} processes × {CALLS_PER_PROCESS} acquire() at limit {limit}, one shared key:")
    print(f"  admissions {total} over {span:.2f} s (first to last)")
    print(f"  max admissions in any {RATE_WINDOW_S:g} s window: {_max_in_window(stamps, RATE_WINDOW_S)}")
    # (n - 1) intervals between n admissions; the ideal at the cap is limit / window.
    print(f"  achieved rate {(total - 1) / span:.2f}/s (ideal {RATE_LIMIT / RATE_WINDOW_S:g}/s)")


def main() -> None:
    url = os.environ.get("REDIS_URL")
    server = None
    with tempfile.TemporaryDirectory() as workdir:
        if not url:
            server = RedisProc(workdir)
            url = server.url
        try:
            print(f"redis: {url}")
            bench_overhead(url)
            bench_two_processes(url)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
