"""Figures for POST /api/v1/deals/<deal>/stay/charges under concurrent clients against gunicorn.

Run: .venv/bin/python bench/charge_latency_bench.py [--postgres] [--seconds 10 | --requests N] [--clients 16]
     [--stays 200] [--workers N] [--gunicorn-arg=...] [--load python|wrk] [--profile [N]]

Setup (not timed): a fresh database (a temp SQLite file, or with --postgres a throw-away PostgreSQL 15 cluster
with fsync=off), migrated; one clinic portal whose settings map the ledger's deal fields (so a charge also
queues the field sync, as a connected clinic's does); a finance API key; a tariff; an expense article; and
--stays admitted stays with large opening deposits, through the ledger's domain functions. A private
redis-server is started for REDIS_URL; every charge passes the per-key rate limiter (a Redis script), queues
its CRM note in the outbox and pushes the wake-up to Redis after commit (nothing drains the list: the
cost measured is the request's own). API_RATE_LIMIT is set far above what the one bench key reaches
(--api-rate-limit), so the limiter's cost is paid but it refuses nothing; with the default of 50/s, 16
clients on one key would mostly measure 429s.

Timed: gunicorn with the Procfile's web options (what we deploy: its config module's worker class, worker
count and access log; --workers overrides the count; --gunicorn-arg adds more) serves --clients clients, each
with its own connection (kept alive where the server allows it; gunicorn's sync workers close after every
response, so the clients reconnect over loopback each time), each POSTing {"amount": "10.00", "article_id": …,
"reason": "bench"} with a unique Idempotency-Key and the finance key, spread round-robin over the stays, after
a one-second warm-up.
Latency is from sending the request to having read the whole response. The clients run on the same machine as
the server, so they share its cores. Where wrk is installed (`apt install wrk`) it drives the same closed loop
by default (`bench/charge_wrk.lua`; `--load python` for the threads): 0.13 ms of CPU per request against the
Python clients' 0.30 on the server's two cores, and no wait for the clients' GIL in its latency; its latency
leaves out the reconnect. wrk stops with up to --clients requests in flight, which the server then completes,
so the entries counted afterwards may exceed wrk's 201s by that many per phase.

Printed: p50/p95/p99 ms, requests/s, errors by status, whether p95 meets the issue's floor (≤ 25 ms), and the
CPU each process group used per request during the timed phase (from /proc). --baseline: the same clients
then GET /healthz (no auth, database or Redis), the floor any request has on this server and machine.
Afterwards (untimed) the entries are counted against the 201s and the hash chains are verified.
--profile N: also serve N charges in-process through Flask's test client, one at a time, under cProfile, and
print where the time goes (the service time of one request, SQL statements and Redis commands per request);
--profile-out FILE keeps the cProfile stats. --ablate N: in-process CPU per charge with one part switched off
at a time (the wake-up, the rate limiter, the CRM mirror, the summary document, the log line), N each.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import http.client
import itertools
import json
import os
import pstats
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import event, func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import PgCluster, RedisProc, free_port, percentile

from widget_server.apikeys import issue_api_key
from widget_server.clock import local_today
from widget_server.db import Database
from widget_server.ledger import Actor, Admission, admit, verify_chains
from widget_server.migrations import upgrade
from widget_server.models import ExpenseArticle, LedgerEntry, OutboxJob, Portal, Tariff
from widget_server.outbox import WAKE_LIST
from widget_server.portals import create_portal

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]

FLOOR_P95_MS = 25.0
DEPOSIT_MINOR = 10**11  # a billion roubles: no charge in any run is refused for funds
DEAL_FIELDS = {"balance": "9001", "daily_rate": "9002", "paid_through": "9003"}


def _setup(url: str, stays: int) -> dict:
    upgrade(url)
    db = Database(url)
    actor = Actor(label="bench", source="api", roles=frozenset({"staff", "finance", "admin"}))
    try:
        with db.transaction() as session:
            portal = create_portal(
                session,
                kind="sandbox",
                name="Bench clinic",
                timezone="Europe/Moscow",
                currency="RUB",
                slug="bench-charges",
                settings={"deal_fields": DEAL_FIELDS},
            )
            key = issue_api_key(session, portal, role="finance", name="bench").plaintext
            tariff = Tariff(portal_id=portal.id, name="Стандарт", daily_rate_minor=350_000)
            article = ExpenseArticle(portal_id=portal.id, name="Перевязочный материал", code="DR")
            session.add_all([tariff, article])
            session.flush()
            portal_id, tariff_id, article_id = portal.id, tariff.id, article.id
            today = local_today(portal.timezone)
        deals = [str(500_000 + i) for i in range(stays)]
        with db.transaction() as session:
            portal = session.get(Portal, portal_id)
            for deal in deals:
                admit(
                    session,
                    portal,
                    Admission(
                        deal_id=deal,
                        admission_date=today - timedelta(days=1),
                        tariff_id=tariff_id,
                        representative_name="Иванова Мария",
                        deposit_minor=DEPOSIT_MINOR,
                        deposit_method="cash",
                    ),
                    actor,
                    f"bench-admit-{deal}",
                )
    finally:
        db.dispose()
    return {"portal_id": portal_id, "key": key, "article_id": article_id, "deals": deals}


def _deployed_args(workers: int | None) -> list[str]:
    """The web process's gunicorn options from the Procfile (what we deploy: its config module), without
    its --bind; `workers` (else the config's WEB_CONCURRENCY or 2 × cores + 1) as --workers."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    line = next(line.split(":", 1)[1] for line in lines if line.startswith("web:"))
    words = shlex.split(line)
    words = words[words.index("gunicorn") + 1 :]
    args: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("--bind", "-b"):
            skip = True
        elif not word.startswith("--bind=") and not word.endswith(":app"):  # the app, widget_server.wsgi:app
            args.append(word)
    return [*args, "--workers", str(workers)] if workers else args


def _start_gunicorn(env: dict, port: int, args: list[str], log: Path) -> subprocess.Popen:
    binary = shutil.which("gunicorn", path=str(ROOT / ".venv" / "bin")) or "gunicorn"
    argv = [binary, "-b", f"127.0.0.1:{port}", *args, "widget_server.wsgi:app"]
    with open(log, "ab") as handle:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"gunicorn did not come up; see {log}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _load(
    port: int,
    fixture: dict,
    clients: int,
    seconds: float,
    max_requests: int | None,
    tag: str,
    *,
    baseline: bool = False,
) -> tuple[list[tuple[float, float, object]], float]:
    """(start, latency s, status or exception name) per request, and the wall time of the phase.
    `baseline`: GET /healthz instead (no auth, no database, no Redis): what any request costs here."""
    body = json.dumps({"amount": "10.00", "article_id": fixture["article_id"], "reason": "bench"})
    deals = fixture["deals"]
    numbers = itertools.count()
    results: list[tuple[float, float, object]] = []
    started = time.perf_counter()
    deadline = started + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while True:
            n = next(numbers)
            if (max_requests is not None and n >= max_requests) or time.perf_counter() >= deadline:
                break
            headers = {
                "Authorization": f"Bearer {fixture['key']}",
                "Content-Type": "application/json",
                "Idempotency-Key": f"bench-{tag}-{n}",
            }
            path = f"/api/v1/deals/{deals[n % len(deals)]}/stay/charges"
            sent = time.perf_counter()
            try:
                if baseline:
                    conn.request("GET", "/healthz")
                else:
                    conn.request("POST", path, body, headers)
                response = conn.getresponse()
                response.read()
                status: object = response.status
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
            mine.append((sent, time.perf_counter() - sent, status))
        conn.close()
        results.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


def _load_wrk(
    port: int, fixture: dict, clients: int, seconds: float, tag: str, *, baseline: bool = False
) -> tuple[dict[str, int], float]:
    """The same closed loop driven by wrk (`bench/charge_wrk.lua`): C, two threads, a fraction of the
    Python clients' CPU, so more of the two cores serve. Latency is from writing the request to reading the
    whole response (wrk's own reconnect after gunicorn closes is not in it, unlike the Python clients')."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("--load wrk needs wrk (apt install wrk)")
    threads = min(2, clients)
    argv = [
        binary, "-t", str(threads), "-c", str(clients), "-d", f"{max(1, round(seconds))}s",
        "-s", str(ROOT / "bench" / "charge_wrk.lua"), f"http://127.0.0.1:{port}", "--",
        fixture["key"], str(fixture["article_id"]), ",".join(fixture["deals"]), tag,
        "baseline" if baseline else "charge", str(threads),
    ]  # fmt: skip
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    return json.loads(out.strip().splitlines()[-1]), wall


def _report_wrk(label: str, summary: dict[str, int], clients: int, *, expect: int = 201) -> int:
    seconds = summary["duration_us"] / 1_000_000
    ok = summary["requests"] - summary["non_2xx"]
    errors = {k: summary[k] for k in ("non_2xx", "connect", "read", "write", "timeout") if summary[k]}
    print(
        f"[{label}] wrk: {summary['requests']} requests by {clients} connections in {seconds:.1f} s: "
        f"{ok} × 2xx (expected {expect}), errors {errors or '{}'}"
    )
    p50, p95, p99, worst = (summary[k] / 1000 for k in ("p50", "p95", "p99", "max"))
    _print_latency(label, f"latency of {expect}s", p50, p95, p99, worst, ok / seconds)
    return ok


def _print_latency(
    label: str, heading: str, p50: float, p95: float, p99: float, worst: float, rate: float
) -> None:
    """The latency lines of one phase, whichever load drove it, and the verdict against the floor."""
    print(f"[{label}] {heading}: p50 {p50:.1f} ms   p95 {p95:.1f} ms   p99 {p99:.1f} ms   max {worst:.1f} ms")
    print(f"[{label}] throughput {rate:.0f} req/s")
    verdict = "meets" if p95 <= FLOOR_P95_MS else "MISSES"
    print(f"[{label}] p95 {p95:.1f} ms {verdict} the ≤ {FLOOR_P95_MS:g} ms floor")


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents[ppid].append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    snapshot = {name: _cpu(pids) for name, pids in groups.items()}
    own = os.times()
    # wrk, when it is the load, is a finished child by the time the phase ends.
    snapshot["bench clients"] = own.user + own.system + own.children_user + own.children_system
    return snapshot


def _report(
    label: str, results: list[tuple[float, float, object]], wall: float, clients: int, *, expect: int = 201
) -> int:
    ok = [latency * 1000 for _, latency, status in results if status == expect]
    statuses = collections.Counter(status for _, _, status in results)
    errors = {str(k): v for k, v in statuses.items() if k != expect}
    print(
        f"[{label}] {len(results)} requests by {clients} clients in {wall:.1f} s: "
        f"{len(ok)} × {expect}, errors by status {errors or '{}'}"
    )
    if not ok:
        return 0
    p50, p95, p99 = (percentile(ok, q) for q in (0.50, 0.95, 0.99))
    _print_latency(label, f"latency of {expect}s", p50, p95, p99, max(ok), len(ok) / wall)
    return len(ok)


def _report_cpu(
    label: str, before: dict[str, float], after: dict[str, float], ok: int, wall: float, status: str
) -> None:
    """CPU per successful request of each process group over one timed phase (from /proc)."""
    if not ok:
        return
    used = {name: after[name] - before[name] for name in after}
    print(
        f"[{label}] CPU per {status} (ms): "
        + ", ".join(f"{name} {seconds_ * 1000 / ok:.2f}" for name, seconds_ in used.items())
        + f"; total {sum(used.values()):.1f} CPU-s in {wall:.1f} s wall on {os.cpu_count()} CPUs"
    )


def _check(url: str, portal_id: int, created: int, redis_url: str) -> None:
    db = Database(url)
    try:
        with db.sessions() as session:
            charges = session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.portal_id == portal_id, LedgerEntry.kind == "charge")
            )
            outbox = session.scalar(
                select(func.count()).select_from(OutboxJob).where(OutboxJob.portal_id == portal_id)
            )
            checked, breaks = verify_chains(session, portal_id)
    finally:
        db.dispose()
    client = redis.Redis.from_url(redis_url)
    queued, drains = client.llen(WAKE_LIST), client.llen("rq:queue:crm")
    client.close()
    print(
        f"  check (untimed): {charges} charge entries for {created} × 201 (incl. warm-up); "
        f"{outbox} outbox rows; {queued} wake-ups waiting for {drains} drain job(s); "
        f"verify_chains: {checked} entries, {len(breaks)} breaks"
    )


def _caller() -> str:
    """The innermost widget_server frames that led to a statement: `file:line function`."""
    frames = [f for f in traceback.extract_stack() if "/widget_server/" in f.filename]
    names = [f"{Path(f.filename).relative_to(ROOT / 'widget_server')}:{f.lineno} {f.name}" for f in frames]
    return " < ".join(reversed(names[-2:]))


def _test_client(env: dict) -> Any:
    """The app in this process, on the served database and Redis, for one-at-a-time requests, with the
    background Redis thread a gunicorn worker starts (wake-ups and throttle counts leave the request)."""
    import logging

    from widget_server import background_redis, create_app

    background_redis.start()

    app = create_app(
        {
            k: v
            for k, v in env.items()
            if k in ("DATABASE_URL", "REDIS_URL", "CLINICBRIDGE_INSTANCE_PATH", "API_RATE_LIMIT")
        }
    )
    for handler in logging.getLogger().handlers:  # keep formatting the request log line, drop the output
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))
    return app.test_client()


def _in_process_charge(client: Any, fixture: dict) -> Callable[[int], None]:
    """One charge through the test client per call, round-robin over the stays, each with a fresh key."""
    body = {"amount": "10.00", "article_id": fixture["article_id"], "reason": "bench"}
    headers = {"Authorization": f"Bearer {fixture['key']}"}
    deals = fixture["deals"]

    def charge(n: int) -> None:
        response = client.post(
            f"/api/v1/deals/{deals[n % len(deals)]}/stay/charges",
            json=body,
            headers={**headers, "Idempotency-Key": f"in-process-{uuid.uuid4().hex}"},
        )
        assert response.status_code == 201, response.get_data(as_text=True)

    return charge


def _profile(env: dict, fixture: dict, count: int, top: int = 0, dump: str | None = None) -> None:
    """Service time of one request, in-process, one at a time: where does it go?"""

    from widget_server import runtime as runtime_module

    client = _test_client(env)
    rt = runtime_module.current()
    statements: list[tuple[str, str]] = []
    trace = {"on": False}

    @event.listens_for(rt.db.engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        where = _caller() if trace["on"] else ""
        statements.append((" ".join(statement.split())[:90], where))

    redis_calls: list[str] = []
    original = redis.Redis.execute_command
    original_pipeline = redis.client.Pipeline.execute

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        redis_calls.append(str(args[0]))
        return original(self, *args, **kwargs)

    def counted_pipeline(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        redis_calls.append(f"pipeline of {len(self.command_stack)}")
        return original_pipeline(self, *args, **kwargs)

    redis.Redis.execute_command = counted  # type: ignore[method-assign]
    redis.client.Pipeline.execute = counted_pipeline  # type: ignore[method-assign]
    one = _in_process_charge(client, fixture)

    try:
        for n in range(20):  # warm-up: imports, compiled-statement caches, connection pools
            one(n)
        redis.Redis.execute_command = original  # type: ignore[method-assign]
        redis.client.Pipeline.execute = original_pipeline  # type: ignore[method-assign]
        event.remove(rt.db.engine, "before_cursor_execute", _count)
        plain: list[float] = []  # timed with no instrumentation at all
        for n in range(count):
            started = time.perf_counter()
            one(n)
            plain.append((time.perf_counter() - started) * 1000)
        redis.Redis.execute_command = counted  # type: ignore[method-assign]
        redis.client.Pipeline.execute = counted_pipeline  # type: ignore[method-assign]
        event.listen(rt.db.engine, "before_cursor_execute", _count)
        checkouts = []
        event.listen(rt.db.engine, "checkout", lambda *_args: checkouts.append(1))
        statements.clear()
        trace["on"] = True
        one(0)
        traced = list(statements)
        trace["on"] = False
        statements.clear()
        redis_calls.clear()
        checkouts.clear()
        for n in range(count):
            one(n)
        sql_count = collections.Counter(text.split(None, 1)[0].upper() for text, _ in statements)
        redis_count = collections.Counter(redis_calls)
        redis_total = len(redis_calls)
        checkout_total = len(checkouts)
        profiler = cProfile.Profile()
        profiler.enable()
        for n in range(count):
            one(n)
        profiler.disable()
    finally:
        redis.Redis.execute_command = original  # type: ignore[method-assign]
        redis.client.Pipeline.execute = original_pipeline  # type: ignore[method-assign]

    print(
        f"  in-process service time, one request at a time, {count} requests (Flask test client, no HTTP "
        f"server): p50 {percentile(plain, 0.5):.1f} ms, p95 {percentile(plain, 0.95):.1f} ms, "
        f"mean {sum(plain) / len(plain):.1f} ms"
    )
    print(
        f"  SQL statements per request: {sum(sql_count.values()) / count:.1f} "
        f"({', '.join(f'{k} {v / count:.1f}' for k, v in sql_count.most_common())})"
    )
    print(
        f"  Redis round trips per request: {redis_total / count:.1f} "
        f"({', '.join(f'{k}: {v / count:.1f}' for k, v in redis_count.most_common())})"
    )
    print(f"  connection-pool checkouts per request: {checkout_total / count:.1f}")
    print("  the statements of one request, in order, with the code that issued them:")
    for number, (text, where) in enumerate(traced, 1):
        print(f"    {number:2d}. {text:90s}  {where}")

    if dump:
        profiler.dump_stats(dump)  # for pstats' callers/callees views
    stats = pstats.Stats(profiler)
    per = 1000 / count
    print(
        f"  cProfile over {count} requests ({stats.total_tt * per:.1f} ms/request under the profiler), "  # type: ignore[attr-defined]
        "cumulative ms/request of the request's phases:"
    )
    phases = [
        ("auth.py", "_authenticate", "authenticate the API key (+ portal), one Core row"),
        ("idempotency.py", "_claim", "claim the Idempotency-Key (in the charge's transaction)"),
        ("api_stay.py", "_portal", "_portal(): session.merge(portal)"),
        ("operations.py", "charge", "ledger charge(): lock, article, overdraft, post_entry"),
        ("accounts.py", "lock_account_row", "  lock_account_row (the account's columns, FOR UPDATE)"),
        ("operations.py", "check_overdraft", "  check_overdraft (against the balance post_entry read)"),
        ("posting.py", "post_entry", "  post_entry (key, head and balance in one read; insert)"),
        ("api_stay.py", "find_account", "find_account again after the charge"),
        ("mirror.py", "mirror_entries", "mirror_entries: summary, note, sync, low-balance"),
        ("mirror.py", "entry_note", "  entry_note (the note's facts; worded by the job)"),
        ("mirror.py", "queue_stay_sync", "  queue_stay_sync"),
        ("outbox.py", "enqueue_outbox", "  enqueue_outbox (insert + flush)"),
        ("summary.py", "stay_summary", "stay_summary (once: mirror and response share it)"),
        ("api_stay.py", "summary_document", "summary_document (ISO dates, no marshmallow)"),
        ("outbox.py", "_run_after_commit", "after-commit Redis wake-up (list push)"),
        ("session.py", "commit", "SQLAlchemy Session.commit (incl. flushes and after-commit wake-ups)"),
        ("fast_sql.py", "run", "fast_sql.run, all prebuilt statements (incl. the driver's work)"),
    ]
    found = {}
    for (filename, _line, name), (_cc, _nc, _tt, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for suffix, function, _label in phases:
            if filename.endswith(suffix) and name == function:
                # max, not sum: session.py has three nested functions named commit
                found[(suffix, function)] = max(found.get((suffix, function), 0.0), cumtime)
    for suffix, function, label in phases:
        if (suffix, function) in found:
            print(f"    {label:62s} {found[(suffix, function)] * per:6.2f}")
    areas = {
        "SQLAlchemy (ORM + Core) own time": ("sqlalchemy",),
        "database driver own time (sqlite3 / psycopg)": ("sqlite3", "psycopg"),
        "redis-py / rq own time": ("/redis/", "/rq/"),
        "marshmallow own time": ("marshmallow",),
        "flask / werkzeug own time": ("/flask/", "/werkzeug/"),
    }
    print("  own time by library (ms/request under the profiler):")
    for label, needles in areas.items():
        own = sum(
            tottime
            for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items()  # type: ignore[attr-defined]
            if any(needle in f"{filename}:{name}" for needle in needles)
        )
        print(f"    {label:62s} {own * per:6.2f}")
    if top:
        print(f"  the {top} functions with the most own time:")
        stats.sort_stats("tottime").print_stats(top)


def _ablate(env: dict, fixture: dict, count: int) -> None:
    """In-process CPU per charge with one part of the request switched off at a time: what each part costs
    without cProfile's overhead (the parts' effects are lost; only the CPU is of interest)."""
    import logging

    import widget_server.http.api_stay as api_stay
    import widget_server.http.auth as auth
    import widget_server.outbox as outbox

    client = _test_client(env)
    charge = _in_process_charge(client, fixture)

    def healthz(_n: int) -> None:
        assert client.get("/healthz").status_code == 200

    request_log = logging.getLogger("widget_server.request")
    parts = [
        ("the whole charge", None, None, None),
        ("GET /healthz instead (the test client's own floor)", None, None, None),
        ("without the Redis wake-up after commit", outbox, "wake_outbox_jobs", lambda ids: None),
        ("without the Redis rate limiter", auth, "_throttle", lambda principal: None),
        ("without the CRM mirror (note, sync, low balance)", api_stay, "mirror_entries", lambda *a: None),
        ("without the summary's JSON document", api_stay, "summary_document", lambda portal, s: {}),
        ("without the request log line", None, None, None),
        ("the whole charge again", None, None, None),
    ]
    print(f"  in-process CPU per request with one part switched off ({count} requests each):")
    for label, module, name, stub in parts:
        original = getattr(module, name) if module is not None else None
        if module is not None:
            setattr(module, name, stub)
        request_log.disabled = label.endswith("log line")
        one = healthz if label.startswith("GET") else charge
        try:
            for n in range(30):
                one(n)
            started = time.process_time()
            for n in range(count):
                one(n)
            used = (time.process_time() - started) * 1000 / count
        finally:
            if module is not None:
                setattr(module, name, original)
            request_log.disabled = False
        print(f"    {label:62s} {used:5.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="a throw-away PostgreSQL 15 cluster")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, help="stop after N requests instead of --seconds")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--stays", type=int, default=200)
    parser.add_argument("--workers", type=int, help="gunicorn workers [default: the Procfile's config]")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of untimed load first")
    parser.add_argument(
        "--api-rate-limit",
        type=int,
        default=100_000,
        help="API_RATE_LIMIT for the server: the per-key limiter still runs on every request, but this "
        "default is far above what one key reaches here, so no charge is refused with 429",
    )
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument")
    parser.add_argument(
        "--load",
        choices=("python", "wrk"),
        help="the clients: wrk (the default where it is installed: C, a third of the Python clients' CPU on "
        "the server's two cores and no GIL queue in its latency), or Python threads with http.client",
    )
    parser.add_argument(
        "--baseline", action="store_true", help="also GET /healthz with the same clients: the server's floor"
    )
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=200,
        default=0,
        help="also profile N in-process requests (default 200)",
    )
    parser.add_argument("--top", type=int, default=0, help="with --profile: list the N costliest functions")
    parser.add_argument("--profile-out", help="with --profile: also write the cProfile stats to this file")
    parser.add_argument(
        "--ablate", type=int, nargs="?", const=600, default=0, help="CPU per charge without each part"
    )
    args = parser.parse_args()
    if args.load is None:
        args.load = "wrk" if shutil.which("wrk") and args.requests is None else "python"
    seconds = args.seconds if args.requests is None else 3600.0

    with tempfile.TemporaryDirectory(prefix="bench-charges-") as workdir:
        work = Path(workdir)
        redis_proc = RedisProc(work)
        cluster = PgCluster() if args.postgres else None
        gunicorn = None
        try:
            url = cluster.url if cluster else f"sqlite:///{work / 'bench.sqlite3'}"
            label = "postgresql" if cluster else "sqlite"
            print(f"[{label}] setup: {args.stays} admitted stays ...", flush=True)
            fixture = _setup(url, args.stays)
            env = dict(os.environ)
            env.update(
                DATABASE_URL=url,
                REDIS_URL=redis_proc.url,
                CLINICBRIDGE_INSTANCE_PATH=str(work / "instance"),
                API_RATE_LIMIT=str(args.api_rate_limit),
            )
            port = free_port()
            log = work / "gunicorn.log"
            served = [*_deployed_args(args.workers), *args.gunicorn_arg]
            gunicorn = _start_gunicorn(env, port, served, log)
            print(
                f"[{label}] gunicorn {' '.join(served)} (the Procfile's web options: "
                f"{len(_descendants(gunicorn.pid)) - 1} workers) on :{port}; "
                f"{args.clients} clients ({args.load}); POST /api/v1/deals/<deal>/stay/charges; "
                f"API_RATE_LIMIT={args.api_rate_limit}/s per key",
                flush=True,
            )

            def phase(tag: str, span: float, *, baseline: bool = False, report: bool = True) -> int:
                """One timed load; the requests it saw succeed (201s, or 200s for the baseline)."""
                expect = 200 if baseline else 201
                # Listed now: PostgreSQL forks a backend per pooled connection, made during the warm-up.
                groups = {"gunicorn (master + workers)": _descendants(gunicorn.pid)}
                groups["redis-server"] = [redis_proc.process.pid]
                if cluster is not None:
                    groups["postgres (all backends)"] = _descendants(cluster.postmaster_pid())
                before = _cpu_snapshot(groups)
                if args.load == "wrk":
                    summary, wall = _load_wrk(port, fixture, args.clients, span, tag, baseline=baseline)
                    if not report:
                        return summary["requests"] - summary["non_2xx"]
                    ok = _report_wrk(label, summary, args.clients, expect=expect)
                else:
                    limit = args.requests if tag != "warmup" else None
                    results, wall = _load(port, fixture, args.clients, span, limit, tag, baseline=baseline)
                    if not report:
                        return sum(1 for *_, status in results if status == expect)
                    ok = _report(label, results, wall, args.clients, expect=expect)
                _report_cpu(label, before, _cpu_snapshot(groups), ok, wall, str(expect))
                return ok

            created = phase("warmup", args.warmup, report=False) if args.warmup > 0 else 0
            created += phase("run", seconds)
            if args.baseline:
                print(f"[{label}] baseline, the same clients on GET /healthz (no auth, database or Redis):")
                phase("base", seconds, baseline=True)
            _stop(gunicorn)
            gunicorn = None
            _check(url, fixture["portal_id"], created, redis_proc.url)
            if args.profile:
                _profile(env, fixture, args.profile, args.top, args.profile_out)
            if args.ablate:
                _ablate(env, fixture, args.ablate)
        finally:
            if gunicorn is not None:
                _stop(gunicorn)
            if cluster is not None:
                cluster.stop()
            redis_proc.stop()


if __name__ == "__main__":
    main()
