"""Settlement views (взаиморасчёты): per counterparty and per deal, per currency, never mixing currencies.

Per counterparty: receivable (they owe us) and payable (we owe them) with ageing by days past due
(0–30 includes what is not due yet). Per deal: what the patient, the insurer and the assistance company
still owe, and what we still owe partner clinics. Figures are minor units; views render them as decimals.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Invoice, InvoicePayment
from .kinds import get_kind

__all__ = ["AGEING_BUCKETS", "CounterpartySettlement", "counterparty_settlement", "deal_settlement"]

AGEING_BUCKETS = ("0-30", "31-60", "61-90", "90+")
OPEN_STATES = ("issued", "partly_paid")


def _bucket(days_overdue: int) -> str:
    if days_overdue <= 30:
        return "0-30"
    if days_overdue <= 60:
        return "31-60"
    if days_overdue <= 90:
        return "61-90"
    return "90+"


@dataclass
class CurrencyPosition:
    invoiced_minor: int = 0
    credited_minor: int = 0
    paid_minor: int = 0
    outstanding_minor: int = 0
    ageing: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGEING_BUCKETS, 0))


@dataclass
class CounterpartySettlement:
    receivable: dict[str, CurrencyPosition]
    payable: dict[str, CurrencyPosition]
    invoices: list[Invoice]
    payments: list[InvoicePayment]


def counterparty_settlement(
    session: Session, portal_id: int, counterparty_id: int, today: date
) -> CounterpartySettlement:
    invoices = list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.portal_id == portal_id,
                Invoice.counterparty_id == counterparty_id,
                Invoice.status != "draft",
            )
            .order_by(Invoice.issue_date, Invoice.id)
        )
    )
    sides: dict[str, dict[str, CurrencyPosition]] = {
        "in": defaultdict(CurrencyPosition),
        "out": defaultdict(CurrencyPosition),
    }
    for invoice in invoices:
        kind = get_kind(invoice.kind)
        direction = kind.direction if kind else "in"
        position = sides[direction][invoice.invoice_currency]
        position.invoiced_minor += invoice.total_minor
        position.credited_minor += invoice.credited_minor
        position.paid_minor += invoice.paid_minor
        if invoice.status in OPEN_STATES:
            position.outstanding_minor += invoice.outstanding_minor
            overdue = (today - invoice.due_date).days if invoice.due_date else 0
            position.ageing[_bucket(max(overdue, 0))] += invoice.outstanding_minor
    payments = list(
        session.scalars(
            select(InvoicePayment)
            .where(InvoicePayment.portal_id == portal_id, InvoicePayment.counterparty_id == counterparty_id)
            .order_by(InvoicePayment.payment_date, InvoicePayment.id)
        )
    )
    return CounterpartySettlement(dict(sides["in"]), dict(sides["out"]), invoices, payments)


@dataclass
class DealPosition:
    invoiced_minor: int = 0
    credited_minor: int = 0
    paid_minor: int = 0
    outstanding_minor: int = 0


def deal_settlement(session: Session, portal_id: int, deal_id: str) -> dict[str, dict[str, DealPosition]]:
    """kind → currency → position, e.g. {"insurer": {"RUB": …}, "partner_clinic": {"EUR": …}}."""
    result: dict[str, dict[str, DealPosition]] = defaultdict(lambda: defaultdict(DealPosition))
    for invoice in session.scalars(
        select(Invoice).where(
            Invoice.portal_id == portal_id, Invoice.deal_id == deal_id, Invoice.status != "draft"
        )
    ):
        position = result[invoice.kind][invoice.invoice_currency]
        position.invoiced_minor += invoice.total_minor
        position.credited_minor += invoice.credited_minor
        position.paid_minor += invoice.paid_minor
        if invoice.status in OPEN_STATES:
            position.outstanding_minor += invoice.outstanding_minor
    return {kind: dict(by_currency) for kind, by_currency in result.items()}
