"""The daily tariff debit for every open stay of a portal, set-based.

One entry per (account, service date) in the portal's calendar, from the first uncharged day through
today: the admission day is charged, missed days after downtime are caught up, and a second run finds
nothing to do (also enforced by a unique index). Accounts are processed in chunks; each chunk locks its
accounts (FOR UPDATE on PostgreSQL), reads last sequence/hash and tariff schedules in three queries,
computes the entries and hash chain in Python and inserts them with one multi-row INSERT.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..models import LedgerEntry, StayAccount, TariffAssignment, utcnow
from .chain import CHAINED_FIELDS, GENESIS, entry_hash

__all__ = ["DailyRun", "post_daily_charges"]

CHUNK = 2000


@dataclass
class DailyRun:
    accounts: int = 0
    entries: int = 0
    charged_account_ids: list[int] = field(default_factory=list)


def _schedules(session: Session, ids: list[int]) -> dict[int, list[tuple[date, int]]]:
    rows = session.execute(
        select(
            TariffAssignment.account_id, TariffAssignment.effective_from, TariffAssignment.daily_rate_minor
        )
        .where(TariffAssignment.account_id.in_(ids))
        .order_by(TariffAssignment.account_id, TariffAssignment.effective_from, TariffAssignment.id)
    )
    merged: dict[int, dict[date, int]] = defaultdict(dict)
    for account_id, effective_from, rate in rows:
        merged[account_id][effective_from] = rate
    return {account_id: sorted(days.items()) for account_id, days in merged.items()}


def _rate(schedule: list[tuple[date, int]], day: date) -> int:
    rate = 0
    for effective_from, value in schedule:
        if effective_from > day:
            break
        rate = value
    return rate


def _chunk(
    session: Session,
    accounts: list[tuple[int, date, str]],
    portal_id: int,
    today: date,
    actor: str,
    run: DailyRun,
) -> None:
    ids = [a[0] for a in accounts]
    session.execute(
        select(StayAccount.id).where(StayAccount.id.in_(ids)).order_by(StayAccount.id).with_for_update()
    )
    last_charged = dict(
        session.execute(
            select(LedgerEntry.account_id, func.max(LedgerEntry.service_date))
            .where(LedgerEntry.account_id.in_(ids), LedgerEntry.kind == "daily_charge")
            .group_by(LedgerEntry.account_id)
        ).all()
    )
    heads_q = (
        select(LedgerEntry.account_id, func.max(LedgerEntry.seq).label("seq"))
        .where(LedgerEntry.account_id.in_(ids))
        .group_by(LedgerEntry.account_id)
        .subquery()
    )
    heads = {
        account_id: (seq, hash_)
        for account_id, seq, hash_ in session.execute(
            select(LedgerEntry.account_id, LedgerEntry.seq, LedgerEntry.hash).join(
                heads_q, (LedgerEntry.account_id == heads_q.c.account_id) & (LedgerEntry.seq == heads_q.c.seq)
            )
        )
    }
    schedules = _schedules(session, ids)
    now = utcnow()
    rows: list[dict] = []
    for account_id, admission_date, currency in accounts:
        previous = last_charged.get(account_id)
        day = admission_date if previous is None else previous + timedelta(days=1)
        seq, prev_hash = heads.get(account_id, (0, GENESIS))
        schedule = schedules.get(account_id, [])
        charged = False
        while day <= today:
            rate = _rate(schedule, day)
            if rate > 0:
                seq += 1
                row = {
                    "portal_id": portal_id,
                    "account_id": account_id,
                    "seq": seq,
                    "kind": "daily_charge",
                    "sign": -1,
                    "amount_minor": rate,
                    "currency": currency,
                    "entry_date": day,
                    "service_date": day,
                    "method": None,
                    "payer": None,
                    "article_id": None,
                    "tariff_id": None,
                    "reason": None,
                    "reverses_entry_id": None,
                    "purchase_request_id": None,
                    "overdraft_override": False,
                    "idempotency_key": f"daily:{account_id}:{day.isoformat()}",
                    "actor": actor,
                    "source": "scheduler",
                    "created_at": now,
                    "prev_hash": prev_hash,
                }
                row["hash"] = prev_hash = entry_hash(prev_hash, {n: row[n] for n in CHAINED_FIELDS})
                rows.append(row)
                charged = True
            day += timedelta(days=1)
        if charged:
            run.charged_account_ids.append(account_id)
    if rows:
        session.execute(insert(LedgerEntry), rows)
    run.entries += len(rows)


def post_daily_charges(
    session_factory, portal_id: int, today: date, *, actor: str = "scheduler", chunk: int = CHUNK
) -> DailyRun:
    """Charge every open account of the portal through `today`; one transaction per chunk."""
    run = DailyRun()
    last_id = 0
    while True:
        with session_factory.begin() as session:
            accounts = session.execute(
                select(StayAccount.id, StayAccount.admission_date, StayAccount.currency)
                .where(
                    StayAccount.portal_id == portal_id, StayAccount.status == "open", StayAccount.id > last_id
                )
                .order_by(StayAccount.id)
                .limit(chunk)
            ).all()
            if not accounts:
                return run
            _chunk(session, [tuple(a) for a in accounts], portal_id, today, actor, run)
            run.accounts += len(accounts)
            last_id = accounts[-1][0]
