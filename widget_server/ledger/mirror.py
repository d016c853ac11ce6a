"""What the CRM shows of the ledger: a note in the deal's feed per entry, and the deal's balance, daily
rate and paid-through fields kept current. Both go through the outbox, after our own commit."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, literal_column, select, update
from sqlalchemy.orm import Session

from ..models import ExpenseArticle, LedgerEntry, OutboxJob, Portal, StayAccount
from ..money import format_minor
from ..outbox import enqueue_outbox_id
from .notes import LEDGER_NOTE, UNLIMITED, feed_date
from .posting import Entry, run
from .summary import StaySummary

__all__ = ["deal_field_map", "entry_note", "mirror_entries", "queue_low_balance_alert", "queue_stay_sync"]


def deal_field_map(portal: Portal) -> dict[str, str]:
    """Our field → CRM field id, from portal settings; unmapped fields are not mirrored."""
    mapping = (portal.settings or {}).get("deal_fields") or {}
    return {name: str(field_id) for name, field_id in mapping.items() if field_id}


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def entry_note(
    session: Session, portal: Portal, entry: Entry, summary: StaySummary, *, latest: bool = True
) -> dict[str, Any]:
    """The facts of one entry's feed note, as they are now: the article's name, the reversed entry's
    number, the balance the entry stored and, for the latest entry of an open stay, the forecast (only
    there is it true). `notes.word_ledger_note` words them when the job sends the note."""
    reversed_seq = None
    if entry.kind == "reversal":
        original = session.get(LedgerEntry, entry.reverses_entry_id)
        reversed_seq = original.seq if original else entry.reverses_entry_id
    article = None
    if entry.article_id is not None:
        article = getattr(entry, "article_name", None)
        if article is None:
            found = session.get(ExpenseArticle, entry.article_id)
            article = found.name if found is not None else None
    paid_through = None
    if latest and summary.account.status == "open":
        forecast = summary.forecast
        paid_through = UNLIMITED if forecast.unlimited else _iso(forecast.paid_through)
    return {
        "kind": entry.kind,
        "amount_minor": entry.amount_minor,
        "currency": entry.currency,
        "locale": portal.locale,
        "article": article,
        "service_date": _iso(entry.service_date),
        "method": entry.method,
        "payer": entry.payer,
        "reason": entry.reason,
        "reversed_seq": reversed_seq,
        "balance_after_minor": entry.balance_after_minor,
        "paid_through": paid_through,
    }


_PENDING_SYNC = (
    select(OutboxJob.id)
    .where(
        OutboxJob.portal_id == bindparam("portal_id"),
        OutboxJob.operation == "sync_stay_fields",
        OutboxJob.deal_id == bindparam("deal_id"),
        # A literal, not a parameter: the planners (PostgreSQL's generic plan of a prepared statement
        # included) use the partial index of pending jobs only when they can see the value.
        OutboxJob.state == literal_column("'pending'"),
        OutboxJob.attempts == 0,
        OutboxJob.lease_until.is_(None),
    )
    .limit(1)
)


def queue_stay_sync(session: Session, portal: Portal, account: StayAccount) -> int | None:
    """Refresh the deal's ledger fields. The job reads the state when it runs, so one pending sync per
    account is enough however many entries arrive before it. The id of that job."""
    if not deal_field_map(portal):
        return None
    pending = run(session, _PENDING_SYNC, {"portal_id": portal.id, "deal_id": account.deal_id}).scalar()
    if pending is not None:
        return int(pending)
    return enqueue_outbox_id(
        session,
        portal_id=portal.id,
        operation="sync_stay_fields",
        payload={"account_id": account.id, "deal_id": account.deal_id},
        idempotency_key=f"stay-sync:{account.id}:{uuid.uuid4().hex}",
        deal_id=account.deal_id,
        origin=f"stay:{account.id}",
    )


def _end_of_workday(portal: Portal, day: date) -> str:
    return datetime.combine(day, time(18, 0), ZoneInfo(portal.timezone)).isoformat()


_SET_ALERTED = update(StayAccount).where(StayAccount.id == bindparam("account_id"))


def _set_alerted(session: Session, account: Any, flag: bool) -> None:
    # The charge path holds the account as a row (lock_account_row): a statement writes the flag there.
    if isinstance(account, StayAccount):
        account.low_balance_alerted = flag
    else:
        run(session, _SET_ALERTED, {"account_id": account.id, "low_balance_alerted": flag})


def queue_low_balance_alert(session: Session, portal: Portal, summary: StaySummary) -> bool:
    """A task for the responsible manager once per crossing into low balance; re-armed by a top-up."""
    account = summary.account
    if not summary.low_balance:
        if account.low_balance_alerted:  # assigning the same value would still cost a flush
            _set_alerted(session, account, False)
        return False
    if account.low_balance_alerted:
        return False
    _set_alerted(session, account, True)
    forecast = summary.forecast
    if forecast.days_of_debt:
        debt = format_minor(-summary.available_minor, account.currency, portal.locale)
        text = f"Долг по депозиту пациента: {debt}. Свяжитесь с представителем для пополнения."
    else:
        until = feed_date(forecast.paid_through) if forecast.paid_through else "—"
        text = (
            f"Депозит пациента заканчивается: оплачено по {until}. Свяжитесь с представителем "
            f"{account.representative_name or ''} для пополнения."
        ).replace("  ", " ")
    enqueue_outbox_id(
        session,
        portal_id=portal.id,
        operation="task_for_responsible",
        payload={"deal_id": account.deal_id, "text": text, "due_at": _end_of_workday(portal, summary.today)},
        idempotency_key=f"low-balance:{account.id}:{uuid.uuid4().hex}",
        deal_id=account.deal_id,
        origin=f"stay:{account.id}",
    )
    return True


def mirror_entries(session: Session, portal: Portal, summary: StaySummary, entries: list[Entry]) -> None:
    """Notes for new entries (replays add nothing) plus one field sync and the low-balance check.
    `summary` is the stay's state after the entries."""
    account = summary.account
    newest = max((e.seq for e in entries), default=0)
    for entry in entries:
        # An entry posted in this transaction cannot have a note yet; only a replayed one is looked up.
        already = (
            None
            if getattr(entry, "posted_now", False)
            else session.scalar(
                select(OutboxJob.id).where(
                    OutboxJob.portal_id == portal.id, OutboxJob.idempotency_key == f"ledger-note:{entry.id}"
                )
            )
        )
        if already is None:
            enqueue_outbox_id(
                session,
                portal_id=portal.id,
                operation="add_note",
                payload={
                    "deal_id": account.deal_id,
                    LEDGER_NOTE: entry_note(session, portal, entry, summary, latest=entry.seq == newest),
                },
                idempotency_key=f"ledger-note:{entry.id}",
                deal_id=account.deal_id,
                origin=f"entry:{entry.id}",
            )
    queue_stay_sync(session, portal, account)
    queue_low_balance_alert(session, portal, summary)
