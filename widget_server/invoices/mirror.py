"""What the CRM shows of invoices: a note in the deal's feed per issue, payment and credit note (payments and
credit notes also in the feed of the counterparty's CRM company, when it is linked), and the deal's
invoiced / paid / outstanding fields. Queued through the outbox in the same transaction, sent
after commit by the crm queue (which retries and shows permanent failures to the admin)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Counterparty, CreditNote, Invoice, InvoiceDocument, InvoicePayment, Portal
from ..money import format_minor
from ..outbox import enqueue_outbox
from .rates import Quote

__all__ = [
    "credit_note_text",
    "issue_text",
    "payment_text",
    "queue_credit_note",
    "queue_issue",
    "queue_payment",
]


def _money(minor: int, currency: str) -> str:
    return format_minor(minor, currency, "ru_RU")


def issue_text(invoice: Invoice) -> str:
    """«Выставлен счёт СК-2025-000042 на 1 234,56 EUR = 115 482,22 ₽ по курсу ЦБ РФ 93,5412 на 13.12.2025»."""
    total = _money(invoice.total_minor, invoice.invoice_currency)
    if invoice.rate is not None and invoice.rate_date is not None:
        price = _money(invoice.price_total_minor, invoice.price_currency)
        # The snapshot keeps the rate at full precision; the column only to 12 decimals.
        exact = Decimal((invoice.snapshot or {}).get("rate") or invoice.rate)
        rate = Quote(exact, invoice.rate_date, invoice.price_currency, invoice.invoice_currency).quoted()[2]
        return (
            f"Выставлен счёт {invoice.number} на {price} = {total} по курсу ЦБ РФ {rate}"
            f" на {invoice.rate_date.strftime('%d.%m.%Y')}"
        )
    return f"Выставлен счёт {invoice.number} на {total}"


def payment_text(payment: InvoicePayment, invoices: list[Invoice]) -> str:
    verb = "Сторно оплаты" if payment.sign < 0 else ("Оплата" if payment.direction == "in" else "Выплата")
    day = payment.payment_date.strftime("%d.%m.%Y")
    parts = [f"{verb} {_money(payment.amount_minor, payment.currency)} от {day}"]
    if payment.bank_reference:
        parts.append(f"п/п {payment.bank_reference}")
    for invoice in invoices:
        parts.append(
            f"счёт {invoice.number}: оплачено {_money(invoice.paid_minor, invoice.invoice_currency)},"
            f" остаток {_money(invoice.outstanding_minor, invoice.invoice_currency)}"
        )
    return ". ".join(parts)


def credit_note_text(note: CreditNote, invoice: Invoice) -> str:
    scope = "полностью" if note.full else "по строкам"
    return (
        f"Кредит-нота {note.number} к счёту {invoice.number} ({scope})"
        f" на {_money(note.amount_minor, note.currency)}."
        f" Основание: {note.reason}. К оплате: {_money(invoice.outstanding_minor, invoice.invoice_currency)}"
    )


def _deal_fields(session: Session, portal: Portal, deal_id: str) -> dict[str, str]:
    """Mapped deal fields (portal settings `invoices.deal_fields`: invoiced / paid / outstanding → CRM
    field id) with the deal's totals in the portal currency's invoices; unmapped: nothing is sent."""
    mapping = ((portal.settings or {}).get("invoices") or {}).get("deal_fields") or {}
    if not mapping:
        return {}
    invoices = session.scalars(
        select(Invoice).where(
            Invoice.portal_id == portal.id,
            Invoice.deal_id == deal_id,
            Invoice.status.in_(("issued", "partly_paid", "paid")),
            Invoice.invoice_currency == portal.currency,
        )
    ).all()
    values = {
        "invoiced": sum(i.due_minor for i in invoices),
        "paid": sum(i.paid_minor for i in invoices),
        "outstanding": sum(i.outstanding_minor for i in invoices),
    }
    digits = Decimal(1).scaleb(-2)
    return {
        str(field_id): str((Decimal(values[name]) * digits).quantize(digits))
        for name, field_id in mapping.items()
        if field_id and name in values
    }


def _optional(
    session: Session, portal: Portal, operation: str, deal_id: str, payload: dict, key: str
) -> None:
    """An operation this package adds to the outbox (`jobs.invoices.INVOICE_OPERATIONS`)."""
    enqueue_outbox(
        session,
        portal_id=portal.id,
        operation=operation,
        payload={"deal_id": deal_id, **payload},
        idempotency_key=key,
        deal_id=deal_id,
        origin="invoices",
    )


def _queue(
    session: Session, portal: Portal, deal_id: str, text: str, key: str, *, notify: bool = False
) -> None:
    enqueue_outbox(
        session,
        portal_id=portal.id,
        operation="add_note",
        payload={"deal_id": deal_id, "text": text},
        idempotency_key=f"{key}:note",
        deal_id=deal_id,
        origin="invoices",
    )
    fields = _deal_fields(session, portal, deal_id)
    if fields:
        enqueue_outbox(
            session,
            portal_id=portal.id,
            operation="update_deal_fields",
            payload={"deal_id": deal_id, "fields": fields},
            idempotency_key=f"{key}:fields",
            deal_id=deal_id,
            origin="invoices",
        )
    if notify:
        _optional(session, portal, "notify_deal_responsible", deal_id, {"text": text}, f"{key}:notify")


def queue_issue(session: Session, portal: Portal, invoice: Invoice) -> None:
    _queue(session, portal, invoice.deal_id, issue_text(invoice), f"invoice:{invoice.id}:issued")


def queue_document(session: Session, portal: Portal, document: InvoiceDocument) -> None:
    """The PDF to the deal's files (the patient's folder in the CRM)."""
    _optional(
        session,
        portal,
        "attach_invoice_document",
        document.deal_id,
        {"portal_id": portal.id, "invoice_id": document.invoice_id, "version": document.version},
        f"invoice:{document.invoice_id}:document:{document.version}",
    )


def _company_note(session: Session, portal: Portal, invoice: Invoice, text: str, key: str) -> None:
    """The same note on the counterparty's CRM company (an insurer, a corporate client), if linked."""
    counterparty = session.get(Counterparty, invoice.counterparty_id)
    company_id = counterparty.crm_company_id if counterparty is not None else None
    if company_id:
        payload = {"company_id": company_id, "text": text}
        _optional(session, portal, "add_company_note", invoice.deal_id, payload, key)


def queue_payment(session: Session, portal: Portal, payment: InvoicePayment, invoices: list[Invoice]) -> None:
    text = payment_text(payment, invoices)
    for deal_id in sorted({invoice.deal_id for invoice in invoices}):
        _queue(session, portal, deal_id, text, f"payment:{payment.id}:deal:{deal_id}", notify=True)
    if invoices:
        # One bank payment is split only across invoices of one counterparty: one company note.
        _company_note(session, portal, invoices[0], text, f"payment:{payment.id}:company")


def queue_credit_note(session: Session, portal: Portal, note: CreditNote, invoice: Invoice) -> None:
    text = credit_note_text(note, invoice)
    _queue(session, portal, invoice.deal_id, text, f"credit_note:{note.id}", notify=True)
    _company_note(session, portal, invoice, text, f"credit_note:{note.id}:company")
