"""Figures for the daily tariff run: `post_daily_charges` for one day over N open stays, against a single
`INSERT … SELECT` that writes the same rows (same columns, running balance included; constant hash strings),
on SQLite and PostgreSQL.

Run: .venv/bin/python bench/daily_charges_bench.py [--accounts 100000] [--only sqlite|postgres] [--repeat 3]
     [--no-verify] [--profile] [--chunk N]

Setup (not timed): migrate a fresh database (a temp SQLite file; a throw-away PostgreSQL 15 cluster with
fsync=off), one portal, one tariff, N open accounts — half admitted yesterday, half today — each with a tariff
assignment, bulk-inserted with SQLAlchemy core; yesterday's charges are then posted so that half the accounts
already have a chain head. Timed: the run for `today` (exactly N entries, one per account); then today's
entries are deleted and the baseline INSERT … SELECT writes the same N rows. Each side runs --repeat times
(today's rows deleted in between, untimed) and the medians are compared. The issue's floor: the run takes at
most 2× the INSERT … SELECT. The first run's chains are checked with verify_chains (untimed). For reference
only, a second INSERT … SELECT that reads each account's last seq and running balance (as a statement that
does not know the data set must) is timed once. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Boolean, Date, bindparam, func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import PgCluster

from widget_server.db import Database
from widget_server.ledger.daily import post_daily_charges
from widget_server.ledger.verify import verify_chains
from widget_server.migrations import upgrade
from widget_server.models import LedgerEntry, StayAccount, Tariff, TariffAssignment, utcnow
from widget_server.models.base import UtcDateTime
from widget_server.portals import create_portal

__all__ = ["main"]

RATE_MINOR = 350_000
FLOOR_RATIO = 2.0
INSERT_BATCH = 20_000

# The seq and running balance are what the run computes for this data set (accounts admitted yesterday
# already hold yesterday's entry at the same rate), the hashes are constants: the baseline is the database's
# cost of writing the rows, nothing more.
BASELINE_SQL = """
INSERT INTO ledger_entries (
    portal_id, account_id, seq, kind, sign, amount_minor, currency, entry_date, service_date, method, payer,
    article_id, tariff_id, reason, reverses_entry_id, purchase_request_id, overdraft_override,
    idempotency_key, actor, source, created_at, prev_hash, hash, balance_after_minor)
SELECT a.portal_id, a.id, CASE WHEN a.admission_date < :today THEN 2 ELSE 1 END,
    'daily_charge', -1, t.daily_rate_minor, a.currency, :today, :today, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, :false,
    'daily:' || a.id || ':' || :today_iso, 'scheduler', 'scheduler', :now, :hash, :hash,
    -t.daily_rate_minor * CASE WHEN a.admission_date < :today THEN 2 ELSE 1 END
FROM stay_accounts a JOIN tariff_assignments t ON t.account_id = a.id
WHERE a.portal_id = :portal AND a.status = 'open'
"""


# What a set-based statement must do without knowing the data set: read each account's ledger head.
GENERIC_SQL = BASELINE_SQL.replace(
    "CASE WHEN a.admission_date < :today THEN 2 ELSE 1 END,\n",
    "COALESCE((SELECT MAX(e.seq) FROM ledger_entries e WHERE e.account_id = a.id), 0) + 1,\n",
).replace(
    "-t.daily_rate_minor * CASE WHEN a.admission_date < :today THEN 2 ELSE 1 END",
    "COALESCE((SELECT e.balance_after_minor FROM ledger_entries e WHERE e.account_id = a.id "
    "ORDER BY e.seq DESC LIMIT 1), 0) - t.daily_rate_minor",
)


def _setup(db: Database, accounts: int, today: date) -> int:
    upgrade(db.url)
    yesterday = today - timedelta(days=1)
    with db.transaction() as session:
        portal = create_portal(
            session,
            kind="sandbox",
            name="Bench clinic",
            timezone="Europe/Moscow",
            currency="RUB",
            slug="bench-daily",
        )
        tariff = Tariff(portal_id=portal.id, name="Стандарт", daily_rate_minor=RATE_MINOR)
        session.add(tariff)
        session.flush()
        portal_id, tariff_id = portal.id, tariff.id
    now = utcnow()
    with db.engine.begin() as conn:
        for start in range(0, accounts, INSERT_BATCH):
            conn.execute(
                insert(StayAccount.__table__),
                [
                    {
                        "portal_id": portal_id,
                        "deal_id": f"deal-{i}",
                        "status": "open",
                        "currency": "RUB",
                        "admission_date": yesterday if i % 2 else today,
                        "low_balance_alerted": False,
                        "opened_by": "bench",
                        "opened_at": now,
                    }
                    for i in range(start, min(accounts, start + INSERT_BATCH))
                ],
            )
        rows = conn.execute(
            select(StayAccount.id, StayAccount.admission_date).where(StayAccount.portal_id == portal_id)
        ).all()
        for start in range(0, len(rows), INSERT_BATCH):
            conn.execute(
                insert(TariffAssignment.__table__),
                [
                    {
                        "portal_id": portal_id,
                        "account_id": account_id,
                        "tariff_id": tariff_id,
                        "daily_rate_minor": RATE_MINOR,
                        "effective_from": admitted,
                        "created_by": "bench",
                        "created_at": now,
                    }
                    for account_id, admitted in rows[start : start + INSERT_BATCH]
                ],
            )
    post_daily_charges(db.sessions, portal_id, yesterday)  # heads for the half admitted yesterday
    _maintain(db)
    return portal_id


def _maintain(db: Database) -> None:
    """Fresh statistics / no dead tuples before each timed step."""
    if db.is_sqlite:
        raw = db.engine.raw_connection()  # pysqlite in autocommit (the engine's hook), no BEGIN
        try:
            raw.driver_connection.execute("ANALYZE")
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


def _count_today(db: Database, today: date) -> int:
    with db.engine.connect() as conn:
        return conn.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.kind == "daily_charge", LedgerEntry.service_date == today)
        )


def _reset_today(db: Database, today: date) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            LedgerEntry.__table__.delete().where(
                LedgerEntry.kind == "daily_charge", LedgerEntry.service_date == today
            )
        )
    _maintain(db)


def _baseline(db: Database, portal_id: int, today: date, sql: str = BASELINE_SQL) -> tuple[float, int]:
    statement = text(sql).bindparams(
        bindparam("today", type_=Date()),
        bindparam("now", type_=UtcDateTime()),
        bindparam("false", type_=Boolean()),
    )
    params = {
        "today": today,
        "today_iso": today.isoformat(),
        "now": utcnow(),
        "false": False,
        "hash": "f" * 64,
        "portal": portal_id,
    }
    started = time.perf_counter()
    with db.engine.begin() as conn:
        inserted = conn.execute(statement, params).rowcount
    return time.perf_counter() - started, inserted


def _seconds(samples: list[float]) -> str:
    return f"median {statistics.median(samples):.3f} s (min {min(samples):.3f}, runs {len(samples)})"


def bench(
    label: str,
    url: str,
    accounts: int,
    *,
    repeat: int,
    verify: bool,
    profile: bool,
    chunk: int | None = None,
) -> None:
    db = Database(url)
    today = date.today()
    options = {"chunk": chunk} if chunk else {}
    try:
        print(f"[{label}] setup: {accounts} open stays ...", flush=True)
        started = time.perf_counter()
        portal_id = _setup(db, accounts, today)
        print(f"[{label}] setup took {time.perf_counter() - started:.1f} s (not timed)", flush=True)

        runs: list[float] = []
        for attempt in range(repeat):
            if attempt:
                _reset_today(db, today)
            profiler = cProfile.Profile() if profile and not attempt else None
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            run = post_daily_charges(db.sessions, portal_id, today, **options)
            if profiler:
                profiler.disable()
            runs.append(time.perf_counter() - started)
            if attempt == 0:
                written = _count_today(db, today)
                print(
                    f"[{label}] post_daily_charges: {run.entries} entries ({written} rows for today) "
                    f"over {run.accounts} accounts"
                )
                if profiler:
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
                if verify:
                    started = time.perf_counter()
                    with db.sessions() as session:
                        checked, breaks = verify_chains(session, portal_id)
                    print(
                        f"[{label}] verify_chains: {checked} entries, {len(breaks)} breaks "
                        f"({time.perf_counter() - started:.1f} s, not timed)"
                    )
        run_s = statistics.median(runs)
        print(
            f"[{label}] post_daily_charges: {_seconds(runs)} = {run.entries / run_s:,.0f} entries/s"
            + (" [profiled run excluded]" if profile and repeat > 1 else "")
        )
        if profile and repeat > 1:
            run_s = statistics.median(runs[1:])

        bases: list[float] = []
        for _ in range(repeat):
            _reset_today(db, today)
            base_s, inserted = _baseline(db, portal_id, today)
            bases.append(base_s)
        base_s = statistics.median(bases)
        print(
            f"[{label}] baseline INSERT … SELECT: {inserted} rows, {_seconds(bases)} = "
            f"{inserted / base_s:,.0f} rows/s"
        )
        ratio = run_s / base_s
        verdict = "meets" if ratio <= FLOOR_RATIO else "MISSES"
        print(
            f"[{label}] ratio run / INSERT … SELECT = {ratio:.2f}× "
            f"({verdict} the ≤ {FLOOR_RATIO:g}× floor; medians)"
        )

        _reset_today(db, today)
        generic_s, _ = _baseline(db, portal_id, today, GENERIC_SQL)
        print(
            f"[{label}] for reference, INSERT … SELECT taking seq and balance from each account's head: "
            f"{generic_s:.3f} s (run / that = {run_s / generic_s:.2f}×)"
        )
        _reset_today(db, today)
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    parser.add_argument("--no-verify", action="store_true", help="skip verify_chains after the run")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed run (slows it down)")
    parser.add_argument("--chunk", type=int, help="accounts per transaction (default: daily.CHUNK)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side; medians compared")
    args = parser.parse_args()
    options = {
        "repeat": max(1, args.repeat),
        "verify": not args.no_verify,
        "profile": args.profile,
        "chunk": args.chunk,
    }
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as workdir:
            url = f"sqlite:///{Path(workdir) / 'bench.sqlite3'}"
            bench("sqlite", url, args.accounts, **options)
    if args.only in (None, "postgres"):
        with PgCluster() as cluster:
            bench("postgresql", cluster.url, args.accounts, **options)


if __name__ == "__main__":
    main()
