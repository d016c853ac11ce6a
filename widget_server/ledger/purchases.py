"""Purchase approval (согласование закупки) as a two-phase transfer.

A request above the portal's threshold places a hold that lowers the available balance. The
representative's consent posts it as a `purchase` entry; a refusal or the hold's expiry voids it. Each
request is resolved exactly once. At or below the threshold the purchase is charged at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..clock import local_today
from ..models import LedgerEntry, Portal, PurchaseRequest, utcnow
from .accounts import lock_account
from .errors import LedgerConflict, LedgerError, LedgerForbidden
from .operations import _article, check_overdraft, post_one_off_debit
from .posting import Actor, Entry, EntryDraft, post_entry
from .settings import ledger_settings

__all__ = [
    "CONSENT_CHANNELS",
    "Consent",
    "approve_purchase",
    "expire_holds",
    "reject_purchase",
    "request_purchase",
]

CONSENT_CHANNELS = ("phone", "in_person", "messenger", "email", "sms")


@dataclass(frozen=True)
class Consent:
    given_by: str
    channel: str
    given_at: datetime


def _require_finance(actor: Actor) -> None:
    if not actor.has("finance"):
        raise LedgerForbidden("role", "purchases need the finance role")


def request_purchase(
    session: Session,
    portal: Portal,
    deal_id: str,
    amount_minor: int,
    article_id: int | None,
    description: str,
    actor: Actor,
    key: str,
    *,
    override: bool = False,
) -> tuple[PurchaseRequest | None, Entry | None]:
    _require_finance(actor)
    if not description.strip():
        raise LedgerError("description", "must not be empty")
    account = lock_account(session, portal.id, deal_id)
    _article(session, portal, article_id)
    settings = ledger_settings(portal)
    replay = session.scalar(
        select(PurchaseRequest).where(
            PurchaseRequest.portal_id == portal.id, PurchaseRequest.idempotency_key == key
        )
    )
    if replay is not None:
        return replay, None
    if amount_minor <= settings.purchase_threshold_minor:
        entry = post_one_off_debit(
            session,
            portal,
            account,
            EntryDraft(
                kind="purchase",
                amount_minor=amount_minor,
                entry_date=local_today(portal.timezone),
                idempotency_key=key,
                article_id=article_id,
                reason=description.strip(),
                overdraft_override=override,
            ),
            actor,
        )
        return None, entry
    if account.status != "open":
        raise LedgerConflict("account", "the stay is closed")
    check_overdraft(session, portal, account, amount_minor, actor, override)
    request = PurchaseRequest(
        portal_id=portal.id,
        account_id=account.id,
        amount_minor=amount_minor,
        article_id=article_id,
        description=description.strip(),
        requested_by=actor.label,
        expires_at=utcnow() + timedelta(hours=settings.purchase_hold_hours),
        idempotency_key=key,
    )
    session.add(request)
    session.flush()
    return request, None


def _pending(session: Session, portal: Portal, deal_id: str, request_id: int) -> tuple:
    account = lock_account(session, portal.id, deal_id)
    request = session.get(PurchaseRequest, request_id)
    if request is None or request.account_id != account.id:
        raise LedgerError("purchase_id", f"no purchase request {request_id} on this stay")
    session.refresh(request)
    return account, request


def approve_purchase(
    session: Session, portal: Portal, deal_id: str, request_id: int, consent: Consent, actor: Actor, key: str
) -> tuple[PurchaseRequest, Entry]:
    _require_finance(actor)
    if consent.channel not in CONSENT_CHANNELS:
        raise LedgerError("consent.channel", f"must be one of {', '.join(CONSENT_CHANNELS)}")
    if not consent.given_by.strip():
        raise LedgerError("consent.given_by", "name the representative who consented")
    if consent.given_at.tzinfo is None:
        raise LedgerError("consent.given_at", "needs a UTC offset")
    if consent.given_at > utcnow() + timedelta(minutes=5):
        raise LedgerError("consent.given_at", "cannot be in the future")
    account, request = _pending(session, portal, deal_id, request_id)
    if request.status == "approved" and request.entry_id is not None:
        entry = session.get(LedgerEntry, request.entry_id)
        if entry is not None and entry.idempotency_key == key:
            return request, entry
    if request.status != "pending":
        raise LedgerConflict("purchase_id", f"the request is already {request.status}")
    if request.expires_at <= utcnow():
        request.status = "expired"
        raise LedgerConflict("purchase_id", "the request expired; its hold was released")
    entry = post_entry(
        session,
        account,
        EntryDraft(
            kind="purchase",
            amount_minor=request.amount_minor,
            entry_date=local_today(portal.timezone),
            idempotency_key=key,
            article_id=request.article_id,
            reason=request.description,
            purchase_request_id=request.id,
        ),
        actor,
    )
    # The hold was checked against the balance when requested; the purchase now takes its place.
    request.status = "approved"
    request.consent_by, request.consent_channel, request.consent_at = (
        consent.given_by.strip(),
        consent.channel,
        consent.given_at,
    )
    request.decided_by, request.decided_at, request.entry_id = actor.label, utcnow(), entry.id
    session.flush()
    return request, entry


def reject_purchase(
    session: Session, portal: Portal, deal_id: str, request_id: int, note: str | None, actor: Actor
) -> PurchaseRequest:
    _require_finance(actor)
    _account, request = _pending(session, portal, deal_id, request_id)
    if request.status == "rejected":
        return request
    if request.status != "pending":
        raise LedgerConflict("purchase_id", f"the request is already {request.status}")
    request.status, request.decided_by, request.decided_at = "rejected", actor.label, utcnow()
    request.decision_note = (note or "").strip() or None
    session.flush()
    return request


def expire_holds(session: Session, now: datetime | None = None) -> int:
    result = session.execute(
        update(PurchaseRequest)
        .where(PurchaseRequest.status == "pending", PurchaseRequest.expires_at <= (now or utcnow()))
        .values(status="expired", decided_at=now or utcnow(), decided_by="scheduler")
    )
    return result.rowcount
