"""Telling the representative: on admission, on each purchase request, on low balance and on discharge.

A message goes through the CRM's own channel where the portal mapped one (`send_message`), otherwise it
becomes a task for the deal's manager to call; either way the deal's feed gets a note saying what was
told. A representative who did not consent to be informed is not messaged. One notice per (stay, event,
reference), so the sweep that watches the ledger never tells twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..clock import local_today
from ..models import InpatientStay, Portal, PurchaseRequest, RelativeNotice, StayAccount
from ..money import format_minor
from ..outbox import enqueue_outbox
from .mirror import queue_note, queue_task
from .settings import inpatient_settings

__all__ = ["inform_about_ledger", "inform_relatives"]


def _who(stay: InpatientStay) -> str:
    relation = f" ({stay.representative_relation})" if stay.representative_relation else ""
    return f"{stay.representative_name}{relation}"


def inform_relatives(
    session: Session, portal: Portal, stay: InpatientStay, event: str, ref: str, text: str
) -> RelativeNotice | None:
    if not stay.representative_consent:
        return None
    settings = inpatient_settings(portal)
    channel = "message" if settings.message_field_id else "task"
    notice = RelativeNotice(
        portal_id=portal.id, stay_id=stay.id, event=event, ref=ref, channel=channel, text=text
    )
    try:
        with session.begin_nested():
            session.add(notice)
    except IntegrityError:
        return None  # told already
    key = f"{stay.id}:{event}:{ref}"
    if channel == "message":
        enqueue_outbox(
            session,
            portal_id=portal.id,
            operation="inpatient_send_message",
            payload={
                "deal_id": stay.deal_id,
                "text": text,
                "text_field_id": settings.message_field_id,
                "bot_id": settings.message_bot_id,
            },
            idempotency_key=f"inpatient-message:{key}",
            deal_id=stay.deal_id,
            origin=f"inpatient:{stay.id}",
        )
        note = f"Представителю {_who(stay)} отправлено сообщение: {text}"
    else:
        phone = f", {stay.representative_phone}" if stay.representative_phone else ""
        queue_task(
            session,
            portal,
            stay.deal_id,
            f"Сообщите представителю {_who(stay)}{phone}: {text}",
            f"relatives:{key}",
            user_id=None,
        )
        note = f"Менеджеру поставлена задача сообщить представителю {_who(stay)}: {text}"
    queue_note(session, portal, stay.deal_id, note, f"relatives:{key}")
    return notice


def inform_about_ledger(session: Session, portal: Portal) -> int:
    """Purchase requests and low balance on the stays in progress that the representative has not been
    told of yet (the ledger records them; we only read it). Two queries for the whole portal: the sweep
    runs every few minutes over every patient."""
    current = (
        select(InpatientStay, StayAccount)
        .join(
            StayAccount,
            (StayAccount.portal_id == InpatientStay.portal_id)
            & (StayAccount.deal_id == InpatientStay.deal_id),
        )
        .where(
            InpatientStay.portal_id == portal.id,
            InpatientStay.status != "discharged",
            InpatientStay.representative_consent,
            StayAccount.status == "open",
        )
    )

    def untold(event: str, ref: Any) -> Any:
        return ~exists().where(
            RelativeNotice.stay_id == InpatientStay.id,
            RelativeNotice.event == event,
            RelativeNotice.ref == ref,
        )

    told = 0
    purchases = session.execute(
        current.add_columns(PurchaseRequest)
        .join(PurchaseRequest, PurchaseRequest.account_id == StayAccount.id)
        .where(PurchaseRequest.status == "pending", untold("purchase", cast(PurchaseRequest.id, String)))
        .order_by(PurchaseRequest.id)
    ).all()
    for stay, account, request in purchases:
        amount = format_minor(request.amount_minor, account.currency, portal.locale)
        text = f"Нужна закупка: {request.description}, {amount}. Просим вашего согласия."
        told += inform_relatives(session, portal, stay, "purchase", str(request.id), text) is not None
    # Once a day while the balance stays low; the ledger re-arms its own alert after a top-up.
    day = f":{local_today(portal.timezone).isoformat()}"
    low = session.execute(
        current.where(
            StayAccount.low_balance_alerted, untold("low_balance", cast(StayAccount.id, String) + day)
        )
    ).all()
    for stay, account in low:
        text = "Депозит пациента заканчивается. Пожалуйста, пополните личный счёт."
        told += inform_relatives(session, portal, stay, "low_balance", f"{account.id}{day}", text) is not None
    return told
