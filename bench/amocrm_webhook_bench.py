"""Figures for the amoCRM account webhook ack (POST /hooks/amocrm/<slug>/<secret>) under an open-loop load
against gunicorn: p50/p95/p99/max, achieved rate, errors, and events lost.

Run: .venv/bin/python bench/amocrm_webhook_bench.py [--postgres] [--rps 200] [--seconds 60] [--workers 2]
     [--connections 48] [--warmup 2] [--gunicorn-arg=...]        quick: --seconds 10

Setup (not timed): a fresh database (a temp SQLite file, or with --postgres a throw-away PostgreSQL 15 cluster
with fsync=off), migrated; one amoCRM portal (account 29842716, clinic.amocrm.ru, as in the fixtures) with a
webhook secret from `install_webhook_secret`; a private redis-server for REDIS_URL (each stored event
enqueues its processing job there after commit; nothing consumes the queue, so the cost measured is the
ack's own); every body built beforehand.

Bodies: the form-urlencoded fixtures `tests/fixtures/amocrm/hooks/{leads,contacts}_*.form` in rotation
(status moves, updates, adds, responsible changes, restores, deletes, a two-lead status body, contacts and
companies), each made a DISTINCT event: every item's `id`, `updated_at` and `last_modified` are replaced
by values unique to the request, so the dedupe key never collapses two of them.

Timed: `gunicorn -w <workers> widget_server.wsgi:app` (sync workers, as the Procfile runs it) on a free port.
The load is open-loop: request i is due at start + i/rps whatever happened before it; --connections
threads (each one http.client connection, kept alive where the server allows it — gunicorn's sync workers
close after every response, so clients reconnect over loopback) take the next due request, wait for its
time and send it. Latency is measured from the DUE time to the end of the response, so a stalled server
or a late client is charged, not hidden (no coordinated omission); the send lag (due → actually sent)
is printed too. The generator's own garbage collector is frozen and off during a phase: its pauses would
otherwise be charged to the server (with it on, 200 req/s looked like a p99 of seconds). Clients and
server share this machine's CPUs. The per-second breakdown shows whether slow acks are one stall or a
steady overload.

Printed: p50/p95/p99/max of the 2xx acks, achieved rate, errors by status, CPU per request by process
group, and, from the database after the run, "lost" = sent − rows in inbox_events − non-2xx answers.
The issue's floor: p99 ≤ 20 ms and 0 lost. Nothing is asserted. Helpers shared with
`charge_latency_bench.py` (gunicorn start/stop, CPU from /proc) are imported from it.
"""

from __future__ import annotations

import argparse
import collections
import gc
import http.client
import itertools
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import redis
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import PgCluster, RedisProc, free_port, percentile
from charge_latency_bench import _cpu, _deployed_args, _descendants, _start_gunicorn, _stop

from widget_server.amocrm_hooks import install_webhook_secret
from widget_server.db import Database
from widget_server.migrations import upgrade
from widget_server.models import InboxEvent
from widget_server.portals import create_portal

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "amocrm" / "hooks"
ACCOUNT_ID = "29842716"
SLUG = "bench-amo-hooks"
FLOOR_P99_MS = 20.0
# An item's own fields (not those of its custom fields or tags): entity[action][n][field].
_ITEM_FIELD = re.compile(r"^(leads|contacts)\[\w+\]\[(\d+)\]\[(id|updated_at|last_modified)\]$")
ID_BASE = 40_000_000
STAMP_BASE = 1_764_000_000


def _setup(url: str) -> str:
    upgrade(url)
    db = Database(url)
    try:
        with db.transaction() as session:
            portal = create_portal(
                session,
                kind="amocrm",
                name="Bench clinic (amoCRM)",
                timezone="Europe/Moscow",
                currency="RUB",
                slug=SLUG,
                external_id=ACCOUNT_ID,
                domain="clinic.amocrm.ru",
            )
            secret = install_webhook_secret(portal)  # committed with the portal row on leaving the block
    finally:
        db.dispose()
    return secret


def _templates() -> list[tuple[str, list[tuple[str, str]]]]:
    found = []
    for path in sorted(FIXTURES.glob("*.form")):
        if not path.name.startswith(("leads_", "contacts_")):
            continue  # customers (unsupported) and unsorted (ignored) carry no lead/contact to vary
        pairs = parse_qsl(path.read_text(encoding="utf-8").strip(), keep_blank_values=True)
        if not any(m and m.group(3) == "id" for m in (_ITEM_FIELD.match(k) for k, _ in pairs)):
            continue
        found.append((path.stem, pairs))
    return found


def _bodies(count: int, offset: int) -> tuple[list[bytes], collections.Counter[str]]:
    """`count` distinct webhook bodies, numbered from `offset`, cycling through the fixture shapes."""
    templates = _templates()
    shapes: collections.Counter[str] = collections.Counter()
    bodies = []
    for n in range(offset, offset + count):
        name, pairs = templates[n % len(templates)]
        shapes[name] += 1
        out = []
        for key, value in pairs:
            match = _ITEM_FIELD.match(key)
            if match is not None:
                index, field = int(match.group(2)), match.group(3)
                value = str(ID_BASE + n * 4 + index) if field == "id" else str(STAMP_BASE + n)
            out.append((key, value))
        bodies.append(urlencode(out).encode("ascii"))
    return bodies, shapes


class Result:
    __slots__ = ("accepted", "done", "due", "sent", "status")

    def __init__(self, due: float, sent: float, done: float, status: object, accepted: bool) -> None:
        self.due, self.sent, self.done, self.status, self.accepted = due, sent, done, status, accepted


def _load(
    port: int, path: str, bodies: list[bytes], rps: float, connections: int
) -> tuple[list[Result], float]:
    """Send bodies[i] at start + i/rps (open loop); one Result per request, and the phase's wall time."""
    numbers = itertools.count()
    results: list[Result] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    start = time.perf_counter() + 0.3  # every thread is up before the first request is due
    total = len(bodies)

    def client() -> None:
        conn: http.client.HTTPConnection | None = None
        mine = []
        while True:
            n = next(numbers)
            if n >= total:
                break
            due = start + n / rps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            accepted = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", path, bodies[n], headers)
                response = conn.getresponse()
                payload = response.read()
                status: object = response.status
                accepted = b'"accepted"' in payload
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            mine.append(Result(due, sent, time.perf_counter(), status, accepted))
        if conn is not None:
            conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(connections)]
    # The generator's own collector pauses would show as server latency: none during the phase.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.enable()
        gc.unfreeze()
    return results, time.perf_counter() - start


def _report(label: str, results: list[Result], rps: float) -> float | None:
    ok = [r for r in results if isinstance(r.status, int) and 200 <= r.status < 300]
    statuses = collections.Counter(r.status for r in results)
    errors = {str(k): v for k, v in statuses.items() if not (isinstance(k, int) and 200 <= k < 300)}
    first_due = min(r.due for r in results)
    last_done = max(r.done for r in results)
    span = last_done - first_due
    duplicates = sum(1 for r in ok if not r.accepted)
    print(
        f"[{label}] {len(results)} requests offered at {rps:g}/s; achieved {len(ok) / span:.1f} acks/s over "
        f"{span:.1f} s; {len(ok)} × 2xx ({duplicates} answered 'duplicate'); "
        f"errors by status {errors or '{}'}"
    )
    if not ok:
        return None
    latency = [(r.done - r.due) * 1000 for r in ok]
    service = [(r.done - r.sent) * 1000 for r in ok]
    lag = [(r.sent - r.due) * 1000 for r in results]
    p50, p95, p99 = (percentile(latency, q) for q in (0.50, 0.95, 0.99))
    print(
        f"[{label}] ack latency from the due time: p50 {p50:.1f} ms   p95 {p95:.1f} ms   p99 {p99:.1f} ms   "
        f"max {max(latency):.1f} ms"
    )
    print(
        f"[{label}]   of which the server's part (sent → answered): p50 {percentile(service, 0.5):.1f} ms, "
        f"p99 {percentile(service, 0.99):.1f} ms; the client's send lag: p50 {percentile(lag, 0.5):.2f} ms, "
        f"p99 {percentile(lag, 0.99):.1f} ms, max {max(lag):.1f} ms"
    )
    over = sum(1 for v in latency if v > FLOOR_P99_MS)
    print(f"[{label}]   acks slower than {FLOOR_P99_MS:g} ms: {over} ({over / len(latency):.2%})")
    # When the slow ones happened: a stall shows as a few bad seconds, overload as all of them.
    by_second: dict[int, list[float]] = collections.defaultdict(list)
    for r, value in zip(ok, latency, strict=True):
        by_second[int(r.due - first_due)].append(value)
    bad = {s: v for s, v in sorted(by_second.items()) if max(v) > FLOOR_P99_MS}
    shown = ", ".join(
        f"#{s}: {sum(1 for x in v if x > FLOOR_P99_MS)} (max {max(v):.0f} ms)"
        for s, v in list(bad.items())[:12]
    )
    print(
        f"[{label}]   seconds with an ack over {FLOOR_P99_MS:g} ms: {len(bad)} of {len(by_second)}"
        + (f" — second: acks over (max): {shown}{' …' if len(bad) > 12 else ''}" if bad else "")
    )
    return p99


def _count_rows(url: str) -> tuple[int, int]:
    db = Database(url)
    try:
        with db.sessions() as session:
            rows = session.scalar(
                select(func.count()).select_from(InboxEvent).where(InboxEvent.source == "amocrm")
            )
            keys = session.scalar(select(func.count(func.distinct(InboxEvent.dedupe_key))))
    finally:
        db.dispose()
    return int(rows or 0), int(keys or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="a throw-away PostgreSQL 15 cluster")
    parser.add_argument("--rps", type=float, default=200.0, help="offered rate (open loop)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of the same load first, untimed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=48, help="client threads / connections")
    parser.add_argument(
        "--api-rate-limit", type=int, default=100_000, help="API_RATE_LIMIT for the server (hooks bypass it)"
    )
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-amo-hooks-") as workdir:
        work = Path(workdir)
        redis_proc = RedisProc(work)
        cluster = PgCluster() if args.postgres else None
        gunicorn = None
        try:
            url = cluster.url if cluster else f"sqlite:///{work / 'bench.sqlite3'}"
            label = "postgresql" if cluster else "sqlite"
            secret = _setup(url)
            warm_count = int(args.warmup * args.rps)
            run_count = int(args.seconds * args.rps)
            warm_bodies, _ = _bodies(warm_count, 0)
            bodies, shapes = _bodies(run_count, warm_count)
            print(
                f"[{label}] setup: portal {SLUG} (account {ACCOUNT_ID}); {warm_count} + {run_count} distinct "
                f"bodies from {len(shapes)} fixture shapes ({', '.join(sorted(shapes))}), "
                f"{sum(map(len, bodies)) / max(len(bodies), 1):.0f} bytes on average",
                flush=True,
            )
            env = dict(os.environ)
            env.update(
                DATABASE_URL=url,
                REDIS_URL=redis_proc.url,
                CLINICBRIDGE_INSTANCE_PATH=str(work / "instance"),
                API_RATE_LIMIT=str(args.api_rate_limit),
            )
            port = free_port()
            log = work / "gunicorn.log"
            gunicorn = _start_gunicorn(env, port, [*_deployed_args(args.workers), *args.gunicorn_arg], log)
            path = f"/hooks/amocrm/{SLUG}/{secret}"
            print(
                f"[{label}] gunicorn -w {args.workers} {' '.join(args.gunicorn_arg)} on :{port}; open loop "
                f"{args.rps:g} req/s for {args.seconds:g} s (+{args.warmup:g} s warm-up) over "
                f"{args.connections} client threads; {os.cpu_count()} CPUs shared by clients and server",
                flush=True,
            )
            sent = 0
            non_2xx = 0
            if warm_bodies:
                warm, _ = _load(port, path, warm_bodies, args.rps, args.connections)
                sent += len(warm)
                non_2xx += sum(1 for r in warm if not (isinstance(r.status, int) and 200 <= r.status < 300))
            groups = {
                "gunicorn (master + workers)": _descendants(gunicorn.pid),
                "redis-server": [redis_proc.process.pid],
            }
            if cluster is not None:
                groups["postgres (all backends)"] = _descendants(cluster.postmaster_pid())
            before = {name: _cpu(pids) for name, pids in groups.items()}
            own_before = os.times()
            results, wall = _load(port, path, bodies, args.rps, args.connections)
            after = {name: _cpu(pids) for name, pids in groups.items()}
            own_after = os.times()
            sent += len(results)
            non_2xx += sum(1 for r in results if not (isinstance(r.status, int) and 200 <= r.status < 300))
            p99 = _report(label, results, args.rps)
            used = {name: after[name] - before[name] for name in after}
            used["load generator (this process)"] = (own_after.user + own_after.system) - (
                own_before.user + own_before.system
            )
            print(
                f"[{label}] CPU per request (ms): "
                + ", ".join(f"{name} {value * 1000 / len(results):.2f}" for name, value in used.items())
                + f"; total {sum(used.values()):.1f} CPU-s in {wall:.1f} s on {os.cpu_count()} CPUs"
            )
            _stop(gunicorn)
            gunicorn = None
            rows, keys = _count_rows(url)
            client = redis.Redis.from_url(redis_proc.url)
            queued = client.llen("rq:queue:default")
            client.close()
            lost = sent - rows - non_2xx
            print(
                f"[{label}] after the run: {sent} sent (warm-up included), {rows} rows in inbox_events "
                f"({keys} distinct dedupe keys), {non_2xx} non-2xx answers → lost = {lost}; "
                f"{queued} processing jobs waiting in rq:queue:default"
            )
            met = p99 is not None and p99 <= FLOOR_P99_MS and lost == 0
            p99_text = "n/a" if p99 is None else f"{p99:.1f} ms"
            print(
                f"[{label}] floor (p99 ≤ {FLOOR_P99_MS:g} ms and 0 lost): p99 {p99_text}, lost {lost} → "
                f"{'MET' if met else 'NOT MET'}"
            )
        finally:
            if gunicorn is not None:
                _stop(gunicorn)
            if cluster is not None:
                cluster.stop()
            redis_proc.stop()


if __name__ == "__main__":
    main()
