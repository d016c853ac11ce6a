"""Lead distribution speed: decisions in-process, decisions through `assign_deal()` with its transaction on
SQLite and PostgreSQL, and the simulator over 30 days of history. Prints figures; asserts nothing.

    .venv/bin/python bench/distribution.py                      # 200 operators, 10 000 leads, 30 × 2 000
    .venv/bin/python bench/distribution.py --leads 2000 --days 3 --no-postgres   # a quick look

Floors (issue 9): in-process ≥ 2 000 decisions/s and p99 ≤ 5 ms; simulation of 30 days × 2 000 leads/day
≤ 10 s. Through assign() there is no floor: it is measured and printed.

In-process: `decide` + `apply_outcome` per lead, 200 members of whom 3 in 4 are on shift, caps on some.
assign(): a portal with 200 operators on shift and one 200-member rule; each lead is one transaction
(pool row locked, decision with its 200-row candidate table, pool counters, assignment, three outbox rows
for responsible/task/note, wake-up after commit to a private Redis). PostgreSQL: a throw-away 15 cluster
(fsync off), or `--pg-url`. Simulation: `simulate()` over an in-memory history of `--sim-operators`
operators starting, pausing and ending their day, and `--per-day` arrivals a day.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import PgCluster, RedisProc, percentile
from cryptography.fernet import Fernet
from rq import Queue

from widget_server import runtime as runtime_module
from widget_server.config import Settings
from widget_server.crypto import TokenCipher
from widget_server.db import Database
from widget_server.distribution import DealContext, assign_deal, create_rule
from widget_server.distribution.engine import MemberView, apply_outcome, decide
from widget_server.distribution.operators import set_status
from widget_server.distribution.simulator import Arrival, History, StatusEvent, simulate
from widget_server.migrations import upgrade
from widget_server.models import Portal, PortalUser
from widget_server.portals import create_portal

STRATEGIES = ("round_robin", "weighted", "least_loaded", "random", "priority_order")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def in_process(operators: int, leads: int) -> None:
    print(f"\n== in-process decide(): {operators} members, {leads} leads per strategy")
    members = [
        MemberView(
            user_id=i + 1,
            weight=1 + i % 3,
            status="on_shift" if i % 4 else "paused",
            load=i % 9,
            max_open=8 if i % 5 == 0 else None,
        )
        for i in range(operators)
    ]
    # CPU time beside wall time: on a shared machine the wall clock also counts other processes' turns.
    for strategy in STRATEGIES:
        state: dict = {}
        times, cpu_times = [], []
        gc.collect()
        started, cpu_started = time.perf_counter(), time.thread_time()
        for seq in range(1, leads + 1):
            t0, c0 = time.perf_counter(), time.thread_time()
            outcome = decide(strategy, members, state, seed=seq * 2654435761)
            state = apply_outcome(state, outcome, seq, "2026-11-23")
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.thread_time() - c0)
        total, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        print(
            f"{strategy:15s} {leads / total:7.0f}/s wall ({leads / cpu:.0f}/s CPU)   "
            f"p50 {_ms(percentile(times, 0.5))}   p99 {_ms(percentile(times, 0.99))} wall, "
            f"{_ms(percentile(cpu_times, 0.99))} CPU   (floor ≥ 2000/s, p99 ≤ 5 ms)"
        )


def _runtime(url: str, redis_url: str, work: Path) -> runtime_module.Runtime:
    import redis

    settings = Settings(
        database_url=url,
        redis_url=redis_url,
        secret_key="bench-secret-key-" + "x" * 32,
        token_encryption_keys=(Fernet.generate_key().decode(),),
        public_base_url="http://127.0.0.1:5000",
        default_timezone="Europe/Moscow",
        default_currency="RUB",
        instance_path=work,
    )
    connection = redis.Redis.from_url(redis_url)
    rt = runtime_module.Runtime(
        settings=settings,
        db=Database(url),
        redis=connection,
        cipher=TokenCipher(settings.token_encryption_keys),
        queues={name: Queue(name, connection=connection) for name in runtime_module.QUEUE_NAMES},
    )
    return runtime_module.install(rt)


def through_assign(label: str, url: str, redis_url: str, work: Path, operators: int, leads: int) -> None:
    upgrade(url)
    rt = _runtime(url, redis_url, work)
    with rt.db.transaction() as s:
        portal = create_portal(
            s, kind="sandbox", name="Bench clinic", timezone="Europe/Moscow", currency="RUB",
            settings={"distribution": {"shift_mode": "manual", "auto_off_minutes": 10**6}},
        )  # fmt: skip
        users = [
            PortalUser(
                portal_id=portal.id, crm_user_id=str(10_000 + i), name=f"Оператор {i}", roles=["staff"]
            )
            for i in range(operators)
        ]
        s.add_all(users)
        s.flush()
        members = [{"user_id": u.id, "weight": 1 + n % 3} for n, u in enumerate(users)]
        create_rule(s, portal, {"name": "Все заявки", "strategy": "round_robin", "members": members}, "bench")
        for user in users:
            set_status(s, portal, user, "on_shift", source="bench", actor="bench")
        portal_id = portal.id
    context = DealContext(pipeline_id="p", stage_id="new")
    times = []
    started = time.perf_counter()
    for n in range(leads):
        t0 = time.perf_counter()
        with rt.db.transaction() as s:
            assign_deal(s, s.get(Portal, portal_id), f"lead-{n}", trigger="bench", context=context)
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    print(
        f"{label:10s} {leads / total:8.0f} decisions/s   p50 {_ms(percentile(times, 0.5))}   "
        f"p99 {_ms(percentile(times, 0.99))}   ({leads} leads, {operators} operators on shift, round-robin)"
    )
    rt.db.dispose()


def _history(operators: int, days: int, per_day: int) -> History:
    """Operators start at 08:00-10:00 Moscow, pause for lunch, end at 17:00-20:00; leads arrive every
    few seconds 08:00-22:00 (the later ones wait for tomorrow's first start)."""
    start = datetime(2026, 10, 1, 5, 0, tzinfo=UTC)  # 08:00 MSK
    events: list[StatusEvent] = []
    arrivals: list[Arrival] = []
    context = DealContext(pipeline_id="p", stage_id="new")
    for day in range(days):
        base = start + timedelta(days=day)
        for op in range(1, operators + 1):
            if (op + day) % 7 == 0:
                continue  # a day off
            on = base + timedelta(minutes=(op * 37) % 120)
            events.append(StatusEvent(on, op, "on_shift"))
            lunch = on + timedelta(hours=4)
            events.append(StatusEvent(lunch, op, "paused", lunch + timedelta(minutes=40)))
            events.append(StatusEvent(on + timedelta(hours=9, minutes=(op * 13) % 120), op, "off"))
        step = timedelta(hours=14) / per_day
        arrivals += [Arrival(base + step * n, f"d{day}-{n}", context) for n in range(per_day)]
    events.sort(key=lambda e: e.at)
    return History(
        portal_id=1, timezone="Europe/Moscow", shift_mode="manual", auto_off_minutes=10**8,
        arrivals=arrivals, events=events, shifts={}, active_users=set(range(1, operators + 1)),
    )  # fmt: skip


def simulation(operators: int, days: int, per_day: int) -> None:
    print(f"\n== simulate(): {days} days × {per_day} leads/day, {operators} operators")
    history = _history(operators, days, per_day)
    members = [{"user_id": op, "weight": 1 + op % 3} for op in range(1, operators + 1)]
    for strategy in ("round_robin", "weighted", "least_loaded"):
        rule = {"name": "draft", "strategy": strategy, "members": members, "match": {}, "priority": 100,
                "outside_hours": "queue", "take_within_min": 15}  # fmt: skip
        started, cpu = time.perf_counter(), time.process_time()
        result = simulate(history, [rule])
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
        pool = result["pools"][0]
        print(
            f"{strategy:15s} {total:6.2f} s (CPU {cpu:.2f} s)   ({len(history.arrivals)} arrivals, "
            f"{len(history.events)} status events; queued {result['queued']}, "
            f"wait p50 {result['wait_seconds']['p50']:.0f} s, "
            f"p95 {result['wait_seconds']['p95']:.0f} s, max deviation {pool['max_deviation']:.2f})   "
            f"(floor ≤ 10 s for 30 × 2000)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operators", type=int, default=200)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=2_000)
    parser.add_argument("--sim-operators", type=int, default=50)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--parts",
        default="inprocess,assign,simulate",
        help="comma-separated subset of inprocess,assign,simulate",
    )
    parser.add_argument(
        "--pg-url", help="an existing, empty PostgreSQL database instead of a throw-away cluster"
    )
    args = parser.parse_args()

    parts = set(args.parts.split(","))
    if "inprocess" in parts:
        in_process(args.operators, args.leads)
    if "assign" in parts:
        assign_both(args)
    if "simulate" in parts:
        simulation(args.sim_operators, args.days, args.per_day)


def assign_both(args: argparse.Namespace) -> None:
    print(f"\n== assign_deal() with its transaction: {args.operators} operators, {args.leads} leads")
    with tempfile.TemporaryDirectory(prefix="bench-distribution-") as tmp:
        work = Path(tmp)
        redis_proc = RedisProc(work)
        try:
            through_assign(
                "SQLite",
                f"sqlite:///{work / 'bench.sqlite3'}",
                redis_proc.url,
                work,
                args.operators,
                args.leads,
            )
            if args.pg_url:
                through_assign("PostgreSQL", args.pg_url, redis_proc.url, work, args.operators, args.leads)
            elif not args.no_postgres:
                with PgCluster() as cluster:
                    through_assign(
                        "PostgreSQL", cluster.url, redis_proc.url, work, args.operators, args.leads
                    )
        finally:
            redis_proc.stop()


if __name__ == "__main__":
    main()
