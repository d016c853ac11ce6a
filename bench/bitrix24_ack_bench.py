"""Bitrix24 event and robot acknowledgement (POST /bitrix24/events, /bitrix24/robots/<name>) under an
open-loop load against gunicorn: p50/p95/p99/max, errors, and calls lost.

Run: .venv/bin/python bench/bitrix24_ack_bench.py [--postgres] [--rps 200] [--seconds 60] [--workers 2]
     quick: --seconds 10

Setup (not timed): a fresh database (temp SQLite, or --postgres a throw-away PostgreSQL 15 cluster), migrated;
one Bitrix24 portal (member_id and domain of the fixtures) with the fixtures' application token stored as its
digest; a private redis-server (each stored call enqueues its processing job there after commit; nothing
consumes the queue, so the cost measured is the acknowledgement's own); every body built beforehand from
`tests/fixtures/bitrix24/incoming/` — deal events with a distinct `data[FIELDS][ID]` and `ts` per request,
robot calls with a distinct `event_token` — so the dedupe key never collapses two of them.

Timed: events at --rps for --seconds, then the four robots' paths one after another, each at --rps for
--seconds / 4 (so robots too are --rps for --seconds), each after a short untimed warm-up. The load
generator, latency accounting (from the due time, no coordinated omission) and report are those of
`amocrm_webhook_bench.py`. Floor (issue 7): p99 ≤ 20 ms, 0 errors. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import PgCluster, RedisProc, free_port
from amocrm_webhook_bench import _load, _report
from charge_latency_bench import _deployed_args, _start_gunicorn, _stop
from sqlalchemy import func, select

from connectors.bitrix24.events import app_token_digest
from widget_server.db import Database
from widget_server.migrations import upgrade
from widget_server.models import InboxEvent
from widget_server.portals import create_portal

ROOT = Path(__file__).resolve().parents[1]
INCOMING = ROOT / "tests" / "fixtures" / "bitrix24" / "incoming"
MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"
FLOOR_P99_MS = 20.0
EVENTS = ["oncrmdealadd", "oncrmdealupdate", "oncrmdealdelete", "oncrmdealmovetocategory"]
ROBOTS = ["stay_status", "patient_folder", "notify", "find_contact"]


def _setup(url: str) -> None:
    upgrade(url)
    db = Database(url)
    try:
        with db.transaction() as session:
            create_portal(
                session,
                kind="bitrix24",
                name="Bench clinic (Bitrix24)",
                timezone="Europe/Moscow",
                currency="RUB",
                slug="bench-b24",
                external_id=MEMBER_ID,
                domain="clinic.bitrix24.ru",
                settings={"bitrix24": {"app_token_sha256": app_token_digest(APP_TOKEN)}},
            )
    finally:
        db.dispose()


def _pairs(name: str) -> list[tuple[str, str]]:
    return parse_qsl((INCOMING / f"{name}.form").read_text("utf-8"), keep_blank_values=True)


def _event_bodies(count: int, offset: int) -> list[bytes]:
    out = []
    for n in range(offset, offset + count):
        pairs = _pairs(EVENTS[n % len(EVENTS)])
        fresh = {"data[FIELDS][ID]": str(500_000 + n), "ts": str(1_764_000_000 + n)}
        out.append(urlencode([(k, fresh.get(k, v)) for k, v in pairs]).encode())
    return out


def _robot_bodies(count: int, offset: int) -> list[tuple[str, bytes]]:
    out = []
    for n in range(offset, offset + count):
        name = ROBOTS[n % len(ROBOTS)]
        token = f"55c1dc1c3f0d75.{n:08d}|A51601_82584_96831_81132|bench{n}"
        pairs = [(k, token if k == "event_token" else v) for k, v in _pairs(f"robot_{name}")]
        out.append((name, urlencode(pairs).encode()))
    return out


def _count(url: str, source: str) -> int:
    db = Database(url)
    try:
        with db.sessions() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(InboxEvent).where(InboxEvent.source == source)
                )
                or 0
            )
    finally:
        db.dispose()


def _phase(
    label: str, port: int, path: str, warm: list[bytes], bodies: list[bytes], rps: float, conns: int
) -> tuple[float | None, int, int, list[Any]]:
    sent = errors = 0
    if warm:
        results, _ = _load(port, path, warm, rps, conns)
        sent += len(results)
        errors += sum(1 for r in results if not (isinstance(r.status, int) and 200 <= r.status < 300))
    results, _ = _load(port, path, bodies, rps, conns)
    sent += len(results)
    errors += sum(1 for r in results if not (isinstance(r.status, int) and 200 <= r.status < 300))
    return _report(label, results, rps), sent, errors, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-b24-ack-") as workdir:
        work = Path(workdir)
        redis_proc = RedisProc(work)
        cluster = PgCluster() if args.postgres else None
        gunicorn = None
        try:
            url = cluster.url if cluster else f"sqlite:///{work / 'bench.sqlite3'}"
            db_label = "postgresql" if cluster else "sqlite"
            _setup(url)
            env = dict(os.environ)
            env.update(
                DATABASE_URL=url,
                REDIS_URL=redis_proc.url,
                CLINICBRIDGE_INSTANCE_PATH=str(work / "instance"),
                API_RATE_LIMIT="100000",
                PUBLIC_BASE_URL="https://cb.example.ru",
            )
            port = free_port()
            gunicorn = _start_gunicorn(env, port, _deployed_args(args.workers), work / "gunicorn.log")
            warm_n, run_n = int(args.warmup * args.rps), int(args.seconds * args.rps)
            print(
                f"[{db_label}] gunicorn -w {args.workers} on :{port}; open loop {args.rps:g}/s "
                f"for {args.seconds:g} s "
                f"per phase (+{args.warmup:g} s warm-up); {os.cpu_count()} CPUs shared by clients and server",
                flush=True,
            )
            label = f"{db_label} events"
            p99_e, sent_e, err_e, _ = _phase(
                label,
                port,
                "/bitrix24/events",
                _event_bodies(warm_n, 0),
                _event_bodies(run_n, warm_n),
                args.rps,
                args.connections,
            )
            rows_e = _count(url, "bitrix24")
            print(
                f"[{label}] {sent_e} sent, {rows_e} inbox rows, {err_e} errors → "
                f"lost {sent_e - rows_e - err_e}"
            )
            # Robots: one load generator at a time (two would fight over the generator's own GC switch and
            # threads), each robot's path at the full rate for its share of the phase, one after another.
            robots = _robot_bodies(warm_n + run_n, 0)
            p99_r, sent_r, err_r = None, 0, 0
            label = f"{db_label} robots"
            by_name: dict[str, list[bytes]] = {}
            for name, body in robots:
                by_name.setdefault(name, []).append(body)
            outcomes: dict[str, tuple[float | None, int, int, list[Any]]] = {}
            for name, bodies in by_name.items():
                cut = int(args.warmup * args.rps / len(by_name))
                outcomes[name] = _phase(
                    f"{label} {name}",
                    port,
                    f"/bitrix24/robots/{name}",
                    bodies[:cut],
                    bodies[cut:],
                    args.rps,
                    args.connections,
                )
            # The floor is judged on all robot acks together, as the platform sends them.
            p99_r = _report(f"{label} (all four)", [r for o in outcomes.values() for r in o[3]], args.rps)
            sent_r = sum(o[1] for o in outcomes.values())
            err_r = sum(o[2] for o in outcomes.values())
            rows_r = _count(url, "bitrix24_robot")
            print(
                f"[{label}] {sent_r} sent at {args.rps:g}/s in total, {rows_r} inbox rows, {err_r} errors → "
                f"lost {sent_r - rows_r - err_r}"
            )
            for name, value, errs in (("events", p99_e, err_e), ("robots", p99_r, err_r)):
                met = value is not None and value <= FLOOR_P99_MS and errs == 0
                print(
                    f"[{db_label}] floor {name} (p99 ≤ {FLOOR_P99_MS:g} ms, 0 errors): "
                    f"p99 {value if value is None else round(value, 1)} ms, {errs} errors → "
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
