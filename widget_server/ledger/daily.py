"""The daily tariff debit for every open stay of a portal, set-based.

One entry per (account, service date) in the portal's calendar, from the first uncharged day through
today: the admission day is charged, missed days after downtime are caught up, and a second run finds
nothing to do (also enforced by a unique index). Accounts are processed in chunks, one transaction each:
the chunk's accounts are selected and locked (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already
holds its single write lock), then their last daily charge, chain head and tariff schedule are read in
three queries, the entries and hash chain are computed in Python and written with one set-based
INSERT … SELECT (unnest() of column arrays on PostgreSQL, multi-row VALUES on SQLite).

This is the one bulk path of the ledger, so it talks to the DBAPI cursor directly: the ORM/Core result and
parameter machinery cost several times the database's own work at 100 000 rows. Values are converted
with the columns' own SQLAlchemy bind/result processors, so what is stored is what the ORM would store.

Hashing: every daily-charge row of a chunk shares all chained fields but account, seq, amount, dates and
idempotency key, so `chain.canonical_content` is rendered once per chunk with placeholders for those and
each row only fills them in. The template is checked against `chain.entry_hash` when it is built, and the
plain `entry_hash` is used if they ever disagree, so stored hashes are always exactly `entry_hash`'s.
"""

# The SQL here is assembled only from this module's constants (table and column names, fixed literals);
# every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import chain
from typing import Any

from sqlalchemy.orm import Session

from ..models import LedgerEntry, StayAccount, TariffAssignment, utcnow
from .chain import CHAINED_FIELDS, GENESIS, canonical_content, entry_hash

__all__ = ["DailyRun", "post_daily_charges"]

CHUNK = 2000
SQLITE_ROWS_PER_INSERT = 2000
"""Rows per multi-row INSERT on SQLite (9 bound parameters a row), fewer if the library's host-parameter
limit is lower (999 before SQLite 3.32)."""

_ONE_DAY = timedelta(days=1)
_KIND, _SIGN, _SOURCE = "daily_charge", -1, "scheduler"

_ENTRIES = LedgerEntry.__tablename__
_ACCOUNTS = StayAccount.__tablename__
_ASSIGNMENTS = TariffAssignment.__tablename__
# Per-row values, in the order of the tuples `_chunk` builds; the rest of a row is constant per chunk.
_ROW_COLUMNS = (
    "account_id",
    "seq",
    "amount_minor",
    "currency",
    "day",
    "idempotency_key",
    "prev_hash",
    "hash",
    "balance_after_minor",
)
_PG_ARRAY_TYPES = ("int8", "int4", "int8", "varchar", "date", "varchar", "varchar", "varchar", "int8")
_INSERT_COLUMNS = (
    "portal_id, kind, sign, overdraft_override, actor, source, created_at, account_id, seq, amount_minor, "
    "currency, entry_date, service_date, idempotency_key, prev_hash, hash, balance_after_minor"
)


@dataclass
class DailyRun:
    accounts: int = 0
    entries: int = 0
    charged_account_ids: list[int] = field(default_factory=list)


def _rate(schedule: list[tuple[date, int]], day: date) -> int:
    rate = 0
    for effective_from, value in schedule:
        if effective_from > day:
            break
        rate = value
    return rate


_SLOTS = ("account_id", "seq", "amount_minor", "entry_date", "service_date", "idempotency_key")
_SORTED_SLOTS = tuple(sorted(_SLOTS))
"""The order `canonical_content` (sort_keys=True) lays the slots out in."""


class _ChainHasher:
    """`entry_hash` for the daily-charge rows of one chunk and currency, rendered from a template.

    `hash(prev_hash, account_id, seq, amount_minor, day, iso_day, idempotency_key)`; the idempotency key
    is "daily:<int>:<iso date>", which JSON does not escape."""

    def __init__(self, constants: dict[str, Any]) -> None:
        self._constants = constants
        marker = uuid.uuid4().hex
        fields = dict(constants)
        fields.update({name: f"@{marker}:{name}@" for name in _SLOTS})
        pieces = re.split(f'"@{marker}:([a-z_]+)@"', canonical_content(fields))
        render = self._joined(pieces) if tuple(pieces[1::2]) == _SORTED_SLOTS else self._formatted(pieces)
        probe = (GENESIS, 123, 45, 678900, date(2026, 1, 2), "2026-01-02", "daily:123:2026-01-02")
        self.hash: Callable[..., str] = render if render(*probe) == self._plain(*probe) else self._plain

    @staticmethod
    def _joined(pieces: list[str]) -> Callable[..., str]:
        c0, c1, c2, c3, c4, c5, c6 = pieces[0::2]
        sha256 = hashlib.sha256

        def render(
            prev_hash: str, account_id: int, seq: int, amount: int, day: date, iso: str, key: str
        ) -> str:
            # Slots in sorted-key order: account_id, amount_minor, entry_date, idempotency_key, seq,
            # service_date.
            text = f'{prev_hash}\n{c0}{account_id}{c1}{amount}{c2}"{iso}"{c3}"{key}"{c4}{seq}{c5}"{iso}"{c6}'
            return sha256(text.encode()).hexdigest()

        return render

    @staticmethod
    def _formatted(pieces: list[str]) -> Callable[..., str]:
        template = "".join(
            "{" + piece + "}" if index % 2 else piece.replace("{", "{{").replace("}", "}}")
            for index, piece in enumerate(pieces)
        )
        format_ = ("{prev_hash}\n" + template).format
        sha256 = hashlib.sha256

        def render(
            prev_hash: str, account_id: int, seq: int, amount: int, day: date, iso: str, key: str
        ) -> str:
            quoted = f'"{iso}"'
            text = format_(
                prev_hash=prev_hash,
                account_id=account_id,
                seq=seq,
                amount_minor=amount,
                entry_date=quoted,
                service_date=quoted,
                idempotency_key=f'"{key}"',
            )
            return sha256(text.encode()).hexdigest()

        return render

    def _plain(
        self, prev_hash: str, account_id: int, seq: int, amount: int, day: date, iso: str, key: str
    ) -> str:
        row = dict(self._constants)
        row.update(
            account_id=account_id,
            seq=seq,
            amount_minor=amount,
            entry_date=day,
            service_date=day,
            idempotency_key=key,
        )
        return entry_hash(prev_hash, {name: row.get(name) for name in CHAINED_FIELDS})


def _constants(portal_id: int, currency: str, actor: str, now: datetime) -> dict[str, Any]:
    """Every column of a daily-charge row except the per-row ones, as the ORM insert used to write them."""
    return {
        "portal_id": portal_id,
        "kind": _KIND,
        "sign": _SIGN,
        "currency": currency,
        "method": None,
        "payer": None,
        "article_id": None,
        "tariff_id": None,
        "reason": None,
        "reverses_entry_id": None,
        "purchase_request_id": None,
        "overdraft_override": False,
        "actor": actor,
        "source": _SOURCE,
        "created_at": now,
    }


class _Db:
    """The chunk transaction's DBAPI cursor, with SQLAlchemy's own conversions for the columns we touch."""

    def __init__(self, session: Session) -> None:
        connection = session.connection()
        self.dialect = connection.dialect
        self.pg = self.dialect.name == "postgresql"
        # psycopg 3 takes %b: binary parameters, no per-element text quoting of arrays.
        self.array_placeholder = "%b" if self.dialect.driver == "psycopg" else "%s"
        self.cursor = connection.connection.cursor()
        self.to_date = self._result(LedgerEntry.__table__.c.service_date)
        self.bind_date = self._bind(LedgerEntry.__table__.c.service_date)
        self.bind_datetime = self._bind(LedgerEntry.__table__.c.created_at)
        self.bind_bool = self._bind(LedgerEntry.__table__.c.overdraft_override)

    def _bind(self, column: Any) -> Callable[[Any], Any]:
        processor = column.type.dialect_impl(self.dialect).bind_processor(self.dialect)
        return processor or (lambda value: value)

    def _result(self, column: Any) -> Callable[[Any], Any]:
        processor = column.type.dialect_impl(self.dialect).result_processor(self.dialect, None)
        return processor or (lambda value: value)

    def close(self) -> None:
        self.cursor.close()

    def rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """`sql` written with `?` placeholders (turned into `%s` for psycopg)."""
        self.cursor.execute(sql.replace("?", "%s") if self.pg else sql, params)
        return self.cursor.fetchall()

    def among(self, column: str, ids: list[int]) -> tuple[str, Any]:
        """`column IN ids` as one bound value (an int8 array literal on PostgreSQL, a JSON list on SQLite)
        rather than thousands of placeholders for the driver to parse and adapt."""
        if self.pg:
            return f"{column} = ANY(?::int8[])", "{" + ",".join(map(str, ids)) + "}"
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(ids)


def _accounts(db: _Db, portal_id: int, after: int, chunk: int) -> list[tuple[int, date, str]]:
    rows = db.rows(
        f"SELECT id, admission_date, currency FROM {_ACCOUNTS} "
        "WHERE portal_id = ? AND status = 'open' AND id > ? ORDER BY id LIMIT ?"
        + (" FOR UPDATE" if db.pg else ""),
        (portal_id, after, chunk),
    )
    to_date = db.to_date
    return [(account_id, to_date(admitted), currency) for account_id, admitted, currency in rows]


def _state(
    db: _Db, ids: list[int]
) -> tuple[dict[int, date], dict[int, tuple[int, str, int]], dict[int, list[tuple[date, int]]]]:
    """Per account: the last charged service date, the chain head (seq, hash, running balance) and the
    tariff schedule ((effective_from, daily rate) by date; for equal dates the latest assignment wins).

    The last charge and the head are probes per account (the newest entry of an index whose leading column
    is the account; ORDER BY … LIMIT 1, which PostgreSQL plans as one index probe where it may plan max() as
    an aggregate), not a GROUP BY over the accounts' entries, which read every entry of every stay in the
    chunk — a year-long stay's 365 daily charges for one row."""
    where, ids_param = db.among("a.id", ids)
    to_date = db.to_date
    last_charged: dict[int, date] = {}
    heads: dict[int, tuple[int, str, int]] = {}
    sql = (
        f"SELECT a.id, (SELECT d.service_date FROM {_ENTRIES} d WHERE d.account_id = a.id "
        f"AND d.kind = '{_KIND}' ORDER BY d.service_date DESC LIMIT 1), h.seq, h.hash, "
        f"h.balance_after_minor FROM {_ACCOUNTS} a LEFT JOIN {_ENTRIES} h ON h.account_id = a.id "
        f"AND h.seq = (SELECT s.seq FROM {_ENTRIES} s WHERE s.account_id = a.id ORDER BY s.seq DESC "
        f"LIMIT 1) WHERE {where}"
    )
    for account_id, day, seq, hash_, balance in db.rows(sql, (ids_param,)):
        if day is not None:
            last_charged[account_id] = to_date(day)
        if seq is not None:
            heads[account_id] = (seq, hash_, balance)
    where, ids_param = db.among("account_id", ids)
    schedules: dict[int, list[tuple[date, int]]] = {}
    for account_id, effective_from, rate in db.rows(
        f"SELECT account_id, effective_from, daily_rate_minor FROM {_ASSIGNMENTS} "
        f"WHERE {where} ORDER BY account_id, effective_from, id",
        (ids_param,),
    ):
        schedule = schedules.get(account_id)
        day = to_date(effective_from)
        if schedule is None:
            schedules[account_id] = [(day, rate)]
        elif schedule[-1][0] == day:
            schedule[-1] = (day, rate)
        else:
            schedule.append((day, rate))
    return last_charged, heads, schedules


def _insert(db: _Db, portal_id: int, actor: str, now: datetime, rows: list[tuple[Any, ...]]) -> None:
    """`rows` as `_ROW_COLUMNS`, the day already in the driver's form (`_Db.bind_date`)."""
    constants = (portal_id, db.bind_bool(False), actor, db.bind_datetime(now))
    if db.pg:
        # One statement over column arrays, sent in binary (no per-element text quoting by the driver).
        arrays = ", ".join(f"{db.array_placeholder}::{kind}[]" for kind in _PG_ARRAY_TYPES)
        db.cursor.execute(
            f"INSERT INTO {_ENTRIES} ({_INSERT_COLUMNS}) "
            f"SELECT %s, '{_KIND}', {_SIGN}, %s, %s, '{_SOURCE}', %s, "
            "v.account_id, v.seq, v.amount_minor, v.currency, v.day, v.day, v.idempotency_key, v.prev_hash, "
            f"v.hash, v.balance_after_minor FROM unnest({arrays}) AS v({', '.join(_ROW_COLUMNS)})",
            constants + tuple(list(column) for column in zip(*rows, strict=True)),
        )
        return
    limit = db.cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per_insert = max(1, min(SQLITE_ROWS_PER_INSERT, (limit - len(constants)) // len(_ROW_COLUMNS)))
    for start in range(0, len(rows), per_insert):
        part = rows[start : start + per_insert]
        values: list[Any] = list(constants)
        values.extend(chain.from_iterable(part))
        db.cursor.execute(
            f"INSERT INTO {_ENTRIES} ({_INSERT_COLUMNS}) "
            f"SELECT ?, '{_KIND}', {_SIGN}, ?, ?, '{_SOURCE}', ?, "
            "v.column1, v.column2, v.column3, v.column4, v.column5, v.column5, v.column6, v.column7, "
            "v.column8, v.column9 FROM (VALUES " + ",".join(["(?,?,?,?,?,?,?,?,?)"] * len(part)) + ") AS v",
            values,
        )


def _chunk(
    db: _Db,
    accounts: list[tuple[int, date, str]],
    portal_id: int,
    today: date,
    actor: str,
    run: DailyRun,
) -> None:
    last_charged, heads, schedules = _state(db, [a[0] for a in accounts])
    now = utcnow()
    hashers: dict[str, Callable[..., str]] = {}
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    charged_ids = run.charged_account_ids
    days: dict[date, tuple[str, Any]] = {}  # day -> (ISO text, the driver's form)
    bind_date = db.bind_date
    for account_id, admission_date, currency in accounts:
        previous = last_charged.get(account_id)
        day = admission_date if previous is None else previous + _ONE_DAY
        if day > today:
            continue
        hash_of = hashers.get(currency)
        if hash_of is None:
            hash_of = hashers[currency] = _ChainHasher(_constants(portal_id, currency, actor, now)).hash
        seq, prev_hash, balance = heads.get(account_id, (0, GENESIS, 0))
        schedule = schedules.get(account_id, [])
        charged = False
        while day <= today:
            rate = _rate(schedule, day)
            if rate > 0:
                seq += 1
                balance += _SIGN * rate
                known = days.get(day)
                if known is None:
                    known = days[day] = (day.isoformat(), bind_date(day))
                iso, stored_day = known
                key = f"daily:{account_id}:{iso}"
                hash_ = hash_of(prev_hash, account_id, seq, rate, day, iso, key)
                append((account_id, seq, rate, currency, stored_day, key, prev_hash, hash_, balance))
                prev_hash = hash_
                charged = True
            day += _ONE_DAY
        if charged:
            charged_ids.append(account_id)
    if rows:
        _insert(db, portal_id, actor, now, rows)
    run.entries += len(rows)


def post_daily_charges(
    session_factory, portal_id: int, today: date, *, actor: str = "scheduler", chunk: int = CHUNK
) -> DailyRun:
    """Charge every open account of the portal through `today`; one transaction per chunk."""
    run = DailyRun()
    last_id = 0
    while True:
        with session_factory.begin() as session:
            db = _Db(session)
            try:
                accounts = _accounts(db, portal_id, last_id, chunk)
                if not accounts:
                    return run
                _chunk(db, accounts, portal_id, today, actor, run)
            finally:
                db.close()
            run.accounts += len(accounts)
            last_id = accounts[-1][0]
