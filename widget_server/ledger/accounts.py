"""Opening, finding and locking stay accounts; tariff history."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ..models import ExpenseArticle, Portal, StayAccount, Tariff, TariffAssignment
from .errors import LedgerConflict, LedgerError, LedgerNotFound
from .posting import Actor, run

__all__ = ["find_account", "lock_account", "lock_account_row", "rate_on", "rate_schedule", "tariff_for"]


# Built once: the statement's construction would cost more than its execution (see posting.run).
_LOCK = (
    select(StayAccount)
    .where(StayAccount.portal_id == bindparam("portal_id"), StayAccount.deal_id == bindparam("deal_id"))
    .order_by(StayAccount.status.desc(), StayAccount.id.desc())  # the open one, else the latest closed
    .limit(1)
    .with_for_update()
    .execution_options(populate_existing=True)
)
_LOCK_ROW = _LOCK.with_only_columns(*StayAccount.__table__.columns)
_ARTICLE = bindparam("article_id")
# The account locked and the expense article a charge names, in one round trip (one statement fewer
# inside SQLite's write lock, one network round trip fewer on PostgreSQL).
_LOCK_ROW_WITH_ARTICLE = _LOCK_ROW.add_columns(
    *(
        select(column).where(ExpenseArticle.id == _ARTICLE).scalar_subquery().label(f"article_{column.key}")
        for column in (ExpenseArticle.portal_id, ExpenseArticle.name, ExpenseArticle.active)
    )
)
_SCHEDULE = (
    select(TariffAssignment.effective_from, TariffAssignment.daily_rate_minor)
    .where(TariffAssignment.account_id == bindparam("account_id"))
    .order_by(TariffAssignment.effective_from, TariffAssignment.id)
)


def find_account(
    session: Session, portal_id: int, deal_id: str, *, include_closed: bool = True
) -> StayAccount:
    """The deal's open account, else (if allowed) its latest closed one; LedgerNotFound otherwise."""
    accounts = session.scalars(
        select(StayAccount)
        .where(StayAccount.portal_id == portal_id, StayAccount.deal_id == deal_id)
        .order_by(StayAccount.status.desc(), StayAccount.id.desc())  # 'open' sorts after 'closed'
    ).all()
    for account in accounts:
        if account.status == "open" or include_closed:
            return account
    raise LedgerNotFound("deal_id", f"no stay account for deal {deal_id}")


def lock_account(session: Session, portal_id: int, deal_id: str) -> StayAccount:
    """The account, locked for this transaction: FOR UPDATE on PostgreSQL; on SQLite the transaction's
    BEGIN IMMEDIATE already holds the database's single write lock."""
    locked = session.scalar(_LOCK, {"portal_id": portal_id, "deal_id": deal_id})
    if locked is None:
        raise LedgerNotFound("deal_id", f"no stay account for deal {deal_id}")
    return locked


def lock_account_row(session: Session, portal_id: int, deal_id: str, *, article_id: int | None = None) -> Any:
    """`lock_account` for a request that only reads the account: its columns as a row, no ORM object
    (a write to it then goes through a statement, as `mirror.queue_low_balance_alert` does). With
    `article_id`, the row also carries that expense article's `article_portal_id`, `article_name` and
    `article_active` (all None when there is no such article)."""
    if article_id is None:
        locked = run(session, _LOCK_ROW, {"portal_id": portal_id, "deal_id": deal_id}).first()
    else:
        params = {"portal_id": portal_id, "deal_id": deal_id, "article_id": article_id}
        locked = run(session, _LOCK_ROW_WITH_ARTICLE, params).first()
    if locked is None:
        raise LedgerNotFound("deal_id", f"no stay account for deal {deal_id}")
    return locked


def tariff_for(session: Session, portal: Portal, tariff_id: int) -> Tariff:
    tariff = session.get(Tariff, tariff_id)
    if tariff is None or tariff.portal_id != portal.id:
        raise LedgerError("tariff_id", f"no tariff {tariff_id} in this portal")
    if not tariff.active:
        raise LedgerError("tariff_id", f"tariff {tariff.name!r} is archived")
    return tariff


def rate_schedule(session: Session, account_id: int) -> list[tuple[date, int]]:
    """(effective_from, daily rate) in date order; for equal dates the latest assignment wins."""
    rows = run(session, _SCHEDULE, {"account_id": account_id}).all()
    schedule: dict[date, int] = {}
    for effective_from, rate in rows:
        schedule[effective_from] = rate
    return sorted(schedule.items())


def rate_on(schedule: list[tuple[date, int]], day: date) -> int:
    rate = 0
    for effective_from, value in schedule:
        if effective_from > day:
            break
        rate = value
    return rate


def assign_tariff(
    session: Session, account: StayAccount, tariff: Tariff, effective_from: date, actor: Actor
) -> TariffAssignment:
    if account.status != "open":
        raise LedgerConflict("account", "the stay is closed")
    if effective_from < account.admission_date:
        raise LedgerError("effective_from", "cannot be before the admission date")
    assignment = TariffAssignment(
        portal_id=account.portal_id,
        account_id=account.id,
        tariff_id=tariff.id,
        daily_rate_minor=tariff.daily_rate_minor,
        effective_from=effective_from,
        created_by=actor.label,
    )
    session.add(assignment)
    session.flush()
    return assignment
