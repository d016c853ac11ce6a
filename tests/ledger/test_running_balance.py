"""The running balance every entry stores (`balance_after_minor`), and what it buys.

1. Every writer stores it: `post_entry` and the daily bulk run, continuing from each other's heads.
2. The balance reads on the posting path cost the same however long the stay: a probe of the chain head,
   not a sum over the account's entries (SQLite: the virtual machine's instruction count; PostgreSQL: the
   entries fetched, under the generic plan a prepared statement gets).
3. Migration 0022 backfills entries written before it, in seq order per account, then enforces NOT NULL;
   its downgrade drops the column.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date

import pytest
from alembic import command
from sqlalchemy import Date, bindparam, create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from widget_server.db import Database
from widget_server.ledger import (
    Admission,
    admit,
    balance_minor,
    charge,
    daily,
    deposit,
    posting,
    reverse,
    stay_summary,
    verify_chains,
)
from widget_server.ledger.daily import post_daily_charges
from widget_server.ledger.statement import statement_rows
from widget_server.migrations import alembic_config, upgrade
from widget_server.models import LedgerEntry, Portal, StayAccount
from widget_server.portals import create_portal

from ..test_migrations import scratch_database
from .test_invariants import ADMIN, FINANCE
from .test_invariants import _catalogue as catalogue_in

RATE = 350_000  # the rate of test_invariants' catalogue


def _catalogue(rt, portal_id: int) -> tuple[int, int]:
    with rt.db.transaction() as s:
        return catalogue_in(s, portal_id)


def _admit(rt, portal_id: int, deal: str, admitted: date, tariff_id: int, opening: int) -> int:
    with rt.db.transaction() as s:
        account = admit(
            s,
            s.get(Portal, portal_id),
            Admission(deal, admitted, tariff_id, deposit_minor=opening, deposit_method="cash"),
            FINANCE,
            f"admit-{deal}",
        )
        return account.id


def _entries(rt, account_id: int) -> list[LedgerEntry]:
    with rt.db.transaction() as s:
        return list(
            s.scalars(
                select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.seq)
            )
        )


# --- 1. every writer stores it -------------------------------------------------------------------------


def test_posted_and_bulk_entries_carry_the_running_balance_across_each_others_heads(rt, clinic, frozen):
    frozen.set_local("2026-12-01 10:00")
    tariff_id, article_id = _catalogue(rt, clinic.id)
    account_id = _admit(rt, clinic.id, "801", date(2026, 12, 1), tariff_id, 1_000_000)
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        charged = charge(s, portal, "801", 120_000, article_id, "перевязка", FINANCE, "c-1")
        # What the request goes on to show is the stored value, not a second computation of it.
        assert charged.balance_after_minor == charged.state_after[0] == 1_000_000 - 120_000
    frozen.set_local("2026-12-04 10:00")
    post_daily_charges(rt.db.sessions, clinic.id, date(2026, 12, 4))  # 1-4 Dec from the posted head
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        deposit(s, portal, "801", 700_000, "card", "Иванова", FINANCE, "d-1")  # from the bulk run's head
        reverse(s, portal, "801", charged.id, "ошибочно", ADMIN, "r-1")
        # The debt a daily run may leave is stored as such.
    post_daily_charges(rt.db.sessions, clinic.id, date(2026, 12, 6))

    entries = _entries(rt, account_id)
    running = list(itertools.accumulate(e.sign * e.amount_minor for e in entries))
    assert [e.kind for e in entries] == ["deposit", "charge"] + ["daily_charge"] * 4 + [
        "deposit",
        "reversal",
    ] + ["daily_charge"] * 2
    assert [e.balance_after_minor for e in entries] == running
    assert running[-1] == 1_000_000 + 700_000 - 6 * RATE < 0
    with rt.db.transaction() as s:
        account = s.get(StayAccount, account_id)
        assert balance_minor(s, account_id) == running[-1]
        assert stay_summary(s, s.get(Portal, clinic.id), account).balance_minor == running[-1]
        # A filtered statement still shows the balance after each shown entry, counting the hidden ones.
        shown = statement_rows(s, account, kinds={"deposit", "reversal"})
        assert [(r.seq, r.balance_minor) for r in shown] == [
            (1, running[0]),
            (7, running[6]),
            (8, running[7]),
        ]
        assert verify_chains(s, clinic.id) == (len(entries), [])


def test_an_account_without_entries_has_a_zero_balance(rt, clinic, frozen):
    frozen.set_local("2026-12-01 10:00")
    tariff_id, _ = _catalogue(rt, clinic.id)
    with rt.db.transaction() as s:
        account = admit(
            s, s.get(Portal, clinic.id), Admission("802", date(2026, 12, 1), tariff_id), FINANCE, "a"
        )
        assert balance_minor(s, account.id) == 0
        assert posting.account_state(s, account.id) == (0, 0, None)


# --- 2. the posting path's reads do not grow with the stay ----------------------------------------------


def _reads(session: Session, work: Callable[[], object]) -> int:
    """What one call of `work` costs the database in work that would grow with the entries it visits:
    SQLite's VM instructions; PostgreSQL's ledger_entries rows fetched (by index or scan)."""
    raw = session.connection().connection.driver_connection
    if session.bind.dialect.name == "sqlite":
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        raw.set_progress_handler(count, 1)
        try:
            work()
        finally:
            raw.set_progress_handler(None, 1)
        return steps[0]

    def tuples() -> int:
        return session.execute(
            text(
                "SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) FROM pg_stat_xact_user_tables "
                "WHERE relname = 'ledger_entries'"
            )
        ).scalar_one()

    before = tuples()
    work()
    return int(tuples() - before)


@pytest.mark.parametrize("name", ["_POSTING", "_STATE", "_SUMS", "_BALANCE_ONLY"])
def test_the_posting_paths_balance_reads_cost_the_same_for_a_long_stay(rt, clinic, frozen, name):
    frozen.set_local("2026-12-01 10:00")
    tariff_id, _ = _catalogue(rt, clinic.id)
    short = _admit(rt, clinic.id, "901", date(2026, 11, 30), tariff_id, 1_000_000)
    long = _admit(rt, clinic.id, "902", date(2025, 12, 1), tariff_id, 1_000_000)
    post_daily_charges(rt.db.sessions, clinic.id, date(2026, 12, 1))
    assert len(_entries(rt, short)) == 3 and len(_entries(rt, long)) == 367
    statement = getattr(posting, name)
    costs = {}
    with rt.db.transaction() as s:
        if not rt.db.is_sqlite:
            s.execute(text("ANALYZE ledger_entries"))
            # A prepared statement's generic plan cannot see the values: what psycopg gets after five runs.
            s.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        for label, account_id in (("short", short), ("long", long)):
            params = {"portal_id": clinic.id, "key": "nothing", "account_id": account_id, "now": frozen.now}
            for _ in range(6):  # past psycopg's prepare threshold
                posting.run(s, statement, params).all()
            costs[label] = _reads(s, lambda params=params: posting.run(s, statement, params).all())
    # A sum over the entries would read the long stay's 367 entries rather than the short one's three.
    assert costs["long"] <= costs["short"] + 5, costs
    if not rt.db.is_sqlite:
        # At most the head, the last daily charge and an earlier entry with the key: never the whole table,
        # which the generic plan of a sum over the entries reads for the short stay as well.
        assert costs["long"] <= 3, costs


def test_the_daily_runs_read_of_last_charges_and_heads_costs_the_same_for_a_long_stay(rt, clinic, frozen):
    """The daily run reads each account's last charged day and chain head by a probe per account: a
    year-long stay costs what a new one does (a GROUP BY over the entries read all 367 of them)."""
    frozen.set_local("2026-12-01 10:00")
    tariff_id, _ = _catalogue(rt, clinic.id)
    short = _admit(rt, clinic.id, "903", date(2026, 11, 30), tariff_id, 1_000_000)
    long = _admit(rt, clinic.id, "904", date(2025, 12, 1), tariff_id, 1_000_000)
    post_daily_charges(rt.db.sessions, clinic.id, date(2026, 12, 1))
    costs, states = {}, {}
    with rt.db.transaction() as s:
        if not rt.db.is_sqlite:
            s.execute(text("ANALYZE ledger_entries"))
        db = daily._Db(s)
        try:
            for label, account_id in (("short", short), ("long", long)):
                states[label] = daily._state(db, [account_id])
                costs[label] = _reads(s, lambda account_id=account_id: daily._state(db, [account_id]))
        finally:
            db.close()
    entries = {label: _entries(rt, account) for label, account in (("short", short), ("long", long))}
    for label, account_id in (("short", short), ("long", long)):
        last_charged, heads, _schedules = states[label]
        head = entries[label][-1]
        assert last_charged[account_id] == date(2026, 12, 1)
        assert heads[account_id] == (head.seq, head.hash, head.balance_after_minor)
    assert costs["long"] <= costs["short"] + 5, costs


# --- 3. migration 0022 ----------------------------------------------------------------------------------


@contextmanager
def _scratch(database_url: str, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'before_0022.sqlite3'}"
    else:
        with scratch_database(database_url) as url:
            yield url


_OLD_ACCOUNT = text(
    "INSERT INTO stay_accounts (id, portal_id, deal_id, status, currency, admission_date, "
    "low_balance_alerted, opened_by, opened_at) VALUES (:id, :portal, :deal, 'open', 'RUB', '2026-11-01', "
    "false, 'old', CURRENT_TIMESTAMP)"
)
_OLD_ENTRY = text(
    "INSERT INTO ledger_entries (id, portal_id, account_id, seq, kind, sign, amount_minor, currency, "
    "entry_date, reverses_entry_id, reason, overdraft_override, idempotency_key, actor, source, created_at, "
    "prev_hash, hash) VALUES (:id, :portal, :account, :seq, :kind, :sign, :amount, 'RUB', :day, :reverses, "
    ":reason, false, :key, 'old', 'api', CURRENT_TIMESTAMP, :h, :h)"
).bindparams(bindparam("day", value=date(2026, 11, 1), type_=Date()))
"""An entry as written before 0022: every column then, the running balance missing."""


def test_migration_0022_backfills_the_running_balance_of_entries_written_before_it(tmp_path, database_url):
    with _scratch(database_url, tmp_path) as url:
        upgrade(url, "0021")
        db = Database(url)
        with db.transaction() as s:
            portal_id = create_portal(
                s, kind="sandbox", name="Клиника", timezone="Europe/Moscow", currency="RUB"
            ).id
        db.dispose()
        engine = create_engine(url)
        with engine.begin() as conn:
            for account_id in (1, 2, 3):
                conn.execute(
                    _OLD_ACCOUNT,
                    {"id": account_id, "portal": portal_id, "deal": f"d{account_id}"},
                )
            # Ids out of seq order and the accounts interleaved: the backfill must follow each account's seq.
            rows = [
                (11, 1, 2, "charge", -1, 1_500, None),
                (12, 1, 1, "deposit", 1, 5_000, None),
                (13, 1, 4, "reversal", 1, 1_500, 11),
                (14, 1, 3, "purchase", -1, 3_500, None),
                (21, 2, 1, "deposit", 1, 100, None),
                (22, 2, 2, "refund", -1, 100, None),
            ]
            for entry_id, account_id, seq, kind, sign, amount, reverses in sorted(
                rows, key=lambda r: r[0] % 10
            ):
                conn.execute(
                    _OLD_ENTRY,
                    {
                        "id": entry_id, "portal": portal_id, "account": account_id, "seq": seq, "kind": kind,
                        "sign": sign, "amount": amount, "reverses": reverses,
                        "reason": "ошибочно" if reverses else None, "key": f"old-{entry_id}", "h": "0" * 64,
                    },
                )  # fmt: skip
        engine.dispose()

        upgrade(url)
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                stored = dict(conn.execute(text("SELECT id, balance_after_minor FROM ledger_entries")).all())
                column = {c["name"]: c for c in inspect(conn).get_columns("ledger_entries")}
            assert stored == {12: 5_000, 11: 3_500, 14: 0, 13: 1_500, 21: 100, 22: 0}
            assert column["balance_after_minor"]["nullable"] is False
            # A writer that forgets the column fails rather than storing a default.
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(
                    _OLD_ENTRY,
                    {
                        "id": 31, "portal": portal_id, "account": 3, "seq": 1, "kind": "deposit", "sign": 1,
                        "amount": 1, "reverses": None, "reason": None, "key": "new", "h": "0" * 64,
                    },
                )  # fmt: skip
            # The table rebuild SQLite needed for NOT NULL kept the ledger's own constraints.
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(text("UPDATE ledger_entries SET amount_minor = 0 WHERE id = 11"))
        finally:
            engine.dispose()

        command.downgrade(alembic_config(url), "0021")
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert "balance_after_minor" not in {
                    c["name"] for c in inspect(conn).get_columns("ledger_entries")
                }
                assert conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one() == 6
        finally:
            engine.dispose()
