"""Mirroring deal field updates to Bitrix24 against the leaky bucket: writes/s ÷ the platform's ceiling.

Run: .venv/bin/python bench/bitrix24_mirror_bench.py [--deals 20000] [--portals 1 2]      quick: --deals 2000

Setup (not timed): per portal, `tests/support/fake_bitrix24.py`'s `FakeBitrix24` (bucket 50 draining 2/s,
503 QUERY_LIMIT_EXCEEDED above it, counted at the moment a request arrived) served over real HTTP by a
process of its own, holding `--deals` deals; a private redis-server for the shared limiter.

Timed: per portal, one process runs `Bitrix24Client.update_deals` for every deal (one custom field each)
with the production limiter (`LeakyBucketLimiter`, Redis, 48 burst then 2/s) and `PortalHttp` pointed at the
fake by a transport adapter (the client still calls https://<portal>/rest/…). `--portals 2` runs two
portals at once, each with its own bucket, from two processes sharing the one Redis.

Printed per portal: writes, requests, seconds T, writes/s, the ceiling 50 × (50 + 2T) / T (a full bucket,
then 2 requests/s, 50 commands each) and the ratio; the fake's 503s and the deals it holds updated.
Floor (issue 7): ratio ≥ 90 % and zero 503s. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from _support import RedisProc
from fake_amocrm_server import local_session

from connectors.bitrix24.client import Bitrix24Client
from connectors.bitrix24.limits import LeakyBucketLimiter, MemoryOperatingBudget, b24_is_throttled
from connectors.bitrix24.transport import B24Transport
from connectors.http import PortalHttp
from connectors.types import DealUpdate, OAuthToken
from tests.support.fake_bitrix24 import FakeBitrix24

FLOOR = 0.90


def serve(domain: str, deals: int, ready: Any, stats: Any, stop: Any) -> None:
    arrival = threading.local()
    fake = FakeBitrix24(None, domain=domain, clock=lambda: getattr(arrival, "at", None) or time.monotonic())
    for i in range(deals):
        fake.new_deal(f"Пациент {i}")
    fake.log = _NoLog()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            arrival.at = time.monotonic()
            url = f"https://{self.headers.get('Host')}{self.path}"
            prepared = requests.Request(
                "POST", url, data=raw, headers={"Content-Type": "application/json"}
            ).prepare()
            status, headers, text = fake._portal_cb(prepared)
            payload = text.encode("utf-8")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ready.put(httpd.server_address[1])
    stop.wait()
    updated = sum(1 for d in fake.deals.values() if d.get("UF_CRM_NUMBER") is not None)
    stats.put(
        {
            "domain": domain,
            "requests": fake.requests,
            "throttled": fake.throttled,
            "updated": updated,
            "max_level": fake.max_level,
        }
    )
    httpd.shutdown()


class _NoLog(list):
    """The bench does not need the fake's call log (20 000 entries of parameters)."""

    def append(self, _item: Any) -> None:
        pass


class StaticTokens:
    def get(self) -> OAuthToken:
        return OAuthToken("access-1", "refresh-1", None, {})

    def save(self, token: OAuthToken) -> None:
        pass

    def refresh_lock(self) -> Any:
        from contextlib import nullcontext

        return nullcontext()

    def mark_reauth_required(self, reason: str) -> None:
        raise RuntimeError(reason)


def mirror(domain: str, port: int, redis_url: str, deals: int, start_at: float, out: Any) -> None:
    import redis

    limiter = LeakyBucketLimiter(redis.Redis.from_url(redis_url), f"b24:bench:{domain}")
    http = PortalHttp(
        name=f"bitrix24:{domain}",
        limiter=limiter,
        is_throttled=b24_is_throttled,
        timeout=(3.05, 55),
        session=local_session(f"http://127.0.0.1:{port}"),
        acquire_timeout=None,
    )
    transport = B24Transport(
        client_endpoint=f"https://{domain}/rest/",
        tokens=StaticTokens(),
        refresh=None,
        http=http,
        budget=MemoryOperatingBudget(),
    )
    client = Bitrix24Client(transport, timezone="Europe/Moscow")
    client.field_defs()  # the one read before writing, not timed
    updates = [DealUpdate(str(101 + i), {"UF_CRM_NUMBER": i + 1}) for i in range(deals)]
    time.sleep(max(0.0, start_at - time.time()))
    started = time.monotonic()
    client.update_deals(updates)
    took = time.monotonic() - started
    out.put({"domain": domain, "seconds": took, "batches": transport.calls.count("batch")})


def run(portals: int, deals: int, redis_url: str) -> None:
    ctx = mp.get_context("spawn")
    servers, clients = [], []
    stop = ctx.Event()
    stats: Any = ctx.Queue()
    results: Any = ctx.Queue()
    ports = []
    for n in range(portals):
        ready: Any = ctx.Queue()
        domain = f"clinic{n + 1}.bitrix24.ru"
        proc = ctx.Process(target=serve, args=(domain, deals, ready, stats, stop), daemon=True)
        proc.start()
        servers.append(proc)
        ports.append((domain, ready.get(timeout=300)))
    start_at = time.time() + 3.0
    for domain, port in ports:
        proc = ctx.Process(
            target=mirror, args=(domain, port, redis_url, deals, start_at, results), daemon=True
        )
        proc.start()
        clients.append(proc)
    got = [results.get(timeout=3600) for _ in clients]
    for proc in clients:
        proc.join()
    stop.set()
    fake_stats = [stats.get(timeout=60) for _ in servers]
    for proc in servers:
        proc.join(timeout=10)
    by_domain = {f["domain"]: f for f in fake_stats}
    for result in sorted(got, key=lambda r: r["domain"]):
        fake = by_domain[result["domain"]]
        seconds = result["seconds"]
        ceiling = 50 * (50 + 2 * seconds) / seconds
        rate = deals / seconds
        print(
            f"[{portals} portal(s)] {result['domain']}: {deals} writes in {result['batches']} batches, "
            f"T = {seconds:.1f} s → {rate:.1f} writes/s; ceiling 50×(50+2T)/T = {ceiling:.1f}/s → "
            f"{rate / ceiling:.1%}; fake: {fake['requests']} requests, {fake['throttled']} × 503, "
            f"bucket peak {fake['max_level']:.1f}/50, {fake['updated']} updated → "
            f"{'MET' if rate / ceiling >= FLOOR and fake['throttled'] == 0 else 'NOT MET'} "
            "(floor ≥ 90 %, 0 × 503)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--portals", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-b24-mirror-") as workdir:
        redis_proc = RedisProc(workdir)
        try:
            for portals in args.portals:
                redis_proc_client = __import__("redis").Redis.from_url(redis_proc.url)
                redis_proc_client.flushall()
                run(portals, args.deals, redis_proc.url)
        finally:
            redis_proc.stop()
    print(json.dumps({"floor": FLOOR}))


if __name__ == "__main__":
    main()
