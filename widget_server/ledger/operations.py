"""Stay operations: admit, top up, charge, reverse, change tariff, discharge.

Every function runs inside the caller's transaction, locks the account first, and writes entries only
through `post_entry`. Refusals raise LedgerError subclasses before anything is written.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..clock import local_today
from ..models import ExpenseArticle, LedgerEntry, Portal, PurchaseRequest, StayAccount, utcnow
from .accounts import (
    assign_tariff,
    find_account,
    lock_account,
    lock_account_row,
    rate_on,
    rate_schedule,
    tariff_for,
)
from .errors import LedgerConflict, LedgerError, LedgerForbidden
from .posting import (
    Actor,
    Entry,
    EntryDraft,
    available_minor,
    balance_minor,
    last_daily_charge,
    post_entry,
    run,
)
from .settings import ledger_settings

__all__ = [
    "Admission",
    "admit",
    "change_tariff",
    "charge",
    "check_overdraft",
    "deposit",
    "discharge",
    "first_uncharged_day",
    "post_daily_charges_for",
    "post_one_off_debit",
    "reverse",
]


def _require(actor: Actor, role: str, what: str) -> None:
    if not actor.has(role):
        raise LedgerForbidden("role", f"{what} needs the {role} role")


_ARTICLE = select(ExpenseArticle.portal_id, ExpenseArticle.name, ExpenseArticle.active).where(
    ExpenseArticle.id == bindparam("article_id")
)


def _article(session: Session, portal: Portal, article_id: int | None) -> Row[Any] | None:
    """The article's portal, name and active flag, if it may be charged to."""
    if article_id is None:
        return None
    article = run(session, _ARTICLE, {"article_id": article_id}).first()
    _check_article(portal, article_id, article)
    return article


def _check_article(portal: Portal, article_id: int, article: Any) -> None:
    """`article`: its portal_id, name and active (None, or a portal_id of None, when there is none)."""
    if article is None or article.portal_id != portal.id:
        raise LedgerError("article_id", f"no expense article {article_id} in this portal")
    if not article.active:
        raise LedgerError("article_id", f"article {article.name!r} is archived")


_ArticleRow = namedtuple("_ArticleRow", "portal_id name active")
"""The article columns `lock_account_row(article_id=…)` reads along with the account."""


@dataclass(frozen=True)
class Admission:
    deal_id: str
    admission_date: date
    tariff_id: int
    representative_name: str | None = None
    representative_phone: str | None = None
    deposit_minor: int | None = None
    deposit_method: str | None = None
    deposit_payer: str | None = None


def admit(session: Session, portal: Portal, admission: Admission, actor: Actor, key: str) -> StayAccount:
    """Open the stay account with its first tariff and, optionally, an opening deposit."""
    _require(actor, "staff" if admission.deposit_minor is None else "finance", "admission")
    today = local_today(portal.timezone)
    if admission.admission_date > today + timedelta(days=1):
        raise LedgerError("admission_date", "cannot be more than one day ahead")
    tariff = tariff_for(session, portal, admission.tariff_id)
    if admission.deposit_minor is not None and admission.deposit_method is None:
        raise LedgerError("deposit.method", "required with an opening deposit")
    existing = session.scalar(
        select(StayAccount).where(
            StayAccount.portal_id == portal.id,
            StayAccount.deal_id == admission.deal_id,
            StayAccount.status == "open",
        )
    )
    if existing is not None:
        raise LedgerConflict("deal_id", f"deal {admission.deal_id} already has an open stay account")
    account = StayAccount(
        portal_id=portal.id,
        deal_id=admission.deal_id,
        currency=portal.currency,
        admission_date=admission.admission_date,
        representative_name=admission.representative_name,
        representative_phone=admission.representative_phone,
        opened_by=actor.label,
    )
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:
        raise LedgerConflict(
            "deal_id", f"deal {admission.deal_id} already has an open stay account"
        ) from None
    assign_tariff(session, account, tariff, admission.admission_date, actor)
    if admission.deposit_minor is not None:
        post_entry(
            session,
            account,
            EntryDraft(
                kind="deposit",
                amount_minor=admission.deposit_minor,
                entry_date=today,
                idempotency_key=f"{key}:deposit",
                method=admission.deposit_method,
                payer=admission.deposit_payer,
            ),
            actor,
        )
    return account


def deposit(
    session: Session,
    portal: Portal,
    deal_id: str,
    amount_minor: int,
    method: str,
    payer: str | None,
    actor: Actor,
    key: str,
) -> Entry:
    _require(actor, "finance", "a top-up")
    account = lock_account(session, portal.id, deal_id)
    return post_entry(
        session,
        account,
        EntryDraft(
            kind="deposit",
            amount_minor=amount_minor,
            entry_date=local_today(portal.timezone),
            idempotency_key=key,
            method=method,
            payer=payer,
        ),
        actor,
    )


def check_overdraft(
    session: Session,
    portal: Portal,
    account: StayAccount,
    amount_minor: int,
    actor: Actor,
    override: bool,
    *,
    available: int | None = None,
) -> None:
    """One-off debits may not take the available balance below the allowed overdraft, unless an admin
    overrides explicitly (daily charges are exempt: a patient in a bed is not evicted by arithmetic).
    `available`: the balance less holds, if the caller has just read it under the account's lock."""
    if override:
        _require(actor, "admin", "an overdraft override")
        return
    limit = ledger_settings(portal).overdraft_minor
    if available is None:
        available = available_minor(session, account.id)
    if available - amount_minor < -limit:
        raise LedgerError(
            "amount",
            f"exceeds the available balance plus allowed overdraft by {amount_minor - available - limit} "
            "minor units; an admin may override",
            code="insufficient_funds",
        )


def charge(
    session: Session,
    portal: Portal,
    deal_id: str,
    amount_minor: int,
    article_id: int,
    reason: str | None,
    actor: Actor,
    key: str,
    *,
    override: bool = False,
) -> Entry:
    _require(actor, "finance", "a one-off charge")
    account = lock_account_row(session, portal.id, deal_id, article_id=article_id)
    article = _ArticleRow(account.article_portal_id, account.article_name, account.article_active)
    _check_article(portal, article_id, article)
    entry = post_one_off_debit(
        session,
        portal,
        account,
        EntryDraft(
            kind="charge",
            amount_minor=amount_minor,
            entry_date=local_today(portal.timezone),
            idempotency_key=key,
            article_id=article_id,
            reason=reason,
            overdraft_override=override,
        ),
        actor,
    )
    entry.article_name = article.name  # type: ignore[union-attr]  # the mirror's note needs no lookup
    return entry


def post_one_off_debit(
    session: Session, portal: Portal, account: StayAccount, draft: EntryDraft, actor: Actor
) -> Entry:
    """A charge or an immediate purchase: judged against the available balance, except a replay, which
    must return the first result rather than be re-judged against today's balance."""
    return post_entry(
        session,
        account,
        draft,
        actor,
        unless_replay=lambda available: check_overdraft(
            session, portal, account, draft.amount_minor, actor, draft.overdraft_override, available=available
        ),
    )


def reverse(
    session: Session, portal: Portal, deal_id: str, entry_id: int, reason: str, actor: Actor, key: str
) -> Entry:
    """Сторно: a compensating entry for exactly one earlier entry, once, by an admin, with a reason."""
    _require(actor, "admin", "a reversal")
    if not reason or not reason.strip():
        raise LedgerError("reason", "a reversal needs a reason")
    account = lock_account(session, portal.id, deal_id)
    original = session.get(LedgerEntry, entry_id)
    if original is None or original.account_id != account.id:
        raise LedgerError("entry_id", f"no entry {entry_id} on this stay account")
    if original.kind == "reversal":
        raise LedgerConflict("entry_id", "a reversal cannot itself be reversed; post a new entry instead")
    already = session.scalar(select(LedgerEntry.id).where(LedgerEntry.reverses_entry_id == entry_id))
    if already is not None:
        replay = session.scalar(
            select(LedgerEntry).where(LedgerEntry.portal_id == portal.id, LedgerEntry.idempotency_key == key)
        )
        if replay is not None and replay.id == already:
            return replay
        raise LedgerConflict("entry_id", f"entry {entry_id} was already reversed by entry {already}")
    return post_entry(
        session,
        account,
        EntryDraft(
            kind="reversal",
            amount_minor=original.amount_minor,
            entry_date=local_today(portal.timezone),
            idempotency_key=key,
            reason=reason.strip(),
            reverses_entry_id=original.id,
            sign=-original.sign,
            article_id=original.article_id,
        ),
        actor,
    )


def first_uncharged_day(session: Session, account: StayAccount) -> date:
    last = last_daily_charge(session, account.id)
    return account.admission_date if last is None else last + timedelta(days=1)


def change_tariff(
    session: Session, portal: Portal, deal_id: str, tariff_id: int, effective_from: date, actor: Actor
) -> None:
    _require(actor, "finance", "a tariff change")
    account = lock_account(session, portal.id, deal_id)
    tariff = tariff_for(session, portal, tariff_id)
    if effective_from < first_uncharged_day(session, account):
        raise LedgerError(
            "effective_from",
            f"days up to {first_uncharged_day(session, account) - timedelta(days=1)} are already charged; "
            "reverse those charges first or choose a later date",
        )
    assign_tariff(session, account, tariff, effective_from, actor)


def post_daily_charges_for(
    session: Session, account: StayAccount, through: date, actor: Actor
) -> list[Entry]:
    """Daily charges for every uncharged day up to `through` (inclusive), at each day's rate."""
    schedule = rate_schedule(session, account.id)
    entries: list[Entry] = []
    day = first_uncharged_day(session, account)
    while day <= through:
        rate = rate_on(schedule, day)
        if rate > 0:
            entries.append(
                post_entry(
                    session,
                    account,
                    EntryDraft(
                        kind="daily_charge",
                        amount_minor=rate,
                        entry_date=day,
                        service_date=day,
                        idempotency_key=f"daily:{account.id}:{day.isoformat()}",
                    ),
                    actor,
                )
            )
        day += timedelta(days=1)
    return entries


def discharge(
    session: Session,
    portal: Portal,
    deal_id: str,
    discharge_date: date,
    refund_method: str | None,
    actor: Actor,
    key: str,
) -> StayAccount:
    """Final daily charges, refund of a positive remainder, pending holds voided, account closed."""
    _require(actor, "finance", "a discharge")
    account = lock_account(session, portal.id, deal_id)
    if account.status != "open":
        raise LedgerConflict("account", "the stay is already closed")
    today = local_today(portal.timezone)
    if discharge_date > today:
        raise LedgerError("discharge_date", "cannot be in the future")
    if discharge_date < account.admission_date:
        raise LedgerError("discharge_date", "cannot be before the admission date")
    last_charged = first_uncharged_day(session, account) - timedelta(days=1)
    settings = ledger_settings(portal)
    final_day = discharge_date if settings.charge_discharge_day else discharge_date - timedelta(days=1)
    if last_charged > final_day:
        raise LedgerConflict(
            "discharge_date",
            f"days up to {last_charged} are already charged; reverse charges after the discharge date first",
        )
    post_daily_charges_for(session, account, final_day, Actor(actor.label, actor.source, actor.roles))
    for request in session.scalars(
        select(PurchaseRequest).where(
            PurchaseRequest.account_id == account.id, PurchaseRequest.status == "pending"
        )
    ):
        request.status, request.decided_at, request.decided_by = "cancelled", utcnow(), actor.label
        request.decision_note = "stay closed at discharge"
    balance = balance_minor(session, account.id)
    if balance > 0:
        if refund_method is None:
            raise LedgerError("refund_method", "required: the account has a positive remainder to refund")
        post_entry(
            session,
            account,
            EntryDraft(
                kind="refund",
                amount_minor=balance,
                entry_date=today,
                idempotency_key=f"{key}:refund",
                method=refund_method,
                reason="возврат остатка при выписке",
            ),
            actor,
        )
    account.discharge_date = discharge_date
    account.status = "closed"
    account.closed_at = utcnow()
    session.flush()
    return account


def find(session: Session, portal: Portal, deal_id: str) -> StayAccount:
    return find_account(session, portal.id, deal_id)
