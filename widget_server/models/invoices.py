"""Invoices: counterparties with versioned requisites, invoices and their lines, credit notes, payments with
allocations, number counters, the CBR rate cache and the document registry.

Amounts are integer minor units of the row's currency. Quantities and rates are exact decimals (Numeric),
never floats. An issued invoice is frozen: its `snapshot` holds lines, both parties' requisites and the
rate as printed; later edits of the counterparty or the price list do not change it.

The CBR rate tables are the one exception to "every row has portal_id": the Bank of Russia publishes one
set per day for everybody, so it is cached once for all portals.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntPK, JsonDoc, utcnow
from .portal import _in

__all__ = [
    "COUNTERPARTY_KINDS",
    "INVOICE_PAYMENT_METHODS",
    "INVOICE_STATUSES",
    "CbrRate",
    "CbrRateDay",
    "Counterparty",
    "CounterpartyRequisites",
    "CreditNote",
    "Invoice",
    "InvoiceCounter",
    "InvoiceDocument",
    "InvoiceLine",
    "InvoicePayment",
    "PaymentAllocation",
]

COUNTERPARTY_KINDS = ("payer", "insurer", "assistance", "partner_clinic", "corporate")
INVOICE_STATUSES = ("draft", "issued", "partly_paid", "paid", "cancelled")
INVOICE_PAYMENT_METHODS = ("transfer", "cash", "card", "offset")
VAT_CATEGORIES = ("exempt", "taxed")


class Counterparty(Base):
    __tablename__ = "counterparties"
    __table_args__ = (
        CheckConstraint(_in("kind", COUNTERPARTY_KINDS), name="kind"),
        CheckConstraint("language IN ('ru', 'en')", name="language"),
        CheckConstraint("payment_terms_days >= 0", name="terms"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(300))
    crm_company_id: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(2), default="ru")
    currency: Mapped[str] = mapped_column(String(3))
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    # The current requisites version; older versions stay for invoices that froze them.
    requisites_version: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CounterpartyRequisites(Base):
    """One version of a counterparty's requisites (реквизиты); never updated, a change adds a version."""

    __tablename__ = "counterparty_requisites"
    __table_args__ = (UniqueConstraint("counterparty_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    counterparty_id: Mapped[int] = mapped_column(ForeignKey("counterparties.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InvoiceCounter(Base):
    """The last number taken in a series and year. Locked (FOR UPDATE / BEGIN IMMEDIATE) by the issuing
    transaction, so a rolled-back issue gives its number back: no gaps, unlike a database sequence."""

    __tablename__ = "invoice_counters"
    __table_args__ = (UniqueConstraint("portal_id", "series", "year"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    series: Mapped[str] = mapped_column(String(16))
    year: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("portal_id", "series", "year", "seq"),
        UniqueConstraint("portal_id", "idempotency_key"),
        CheckConstraint(_in("status", INVOICE_STATUSES), name="status"),
        CheckConstraint("status = 'draft' OR status = 'cancelled' OR number IS NOT NULL", name="numbered"),
        CheckConstraint("due_date IS NULL OR issue_date IS NULL OR due_date >= issue_date", name="dates"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    deal_id: Mapped[str] = mapped_column(String(64), index=True)
    counterparty_id: Mapped[int] = mapped_column(ForeignKey("counterparties.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    series: Mapped[str | None] = mapped_column(String(16))
    year: Mapped[int | None] = mapped_column(Integer)
    seq: Mapped[int | None] = mapped_column(Integer)
    number: Mapped[str | None] = mapped_column(String(40))
    issue_date: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date)
    price_currency: Mapped[str] = mapped_column(String(3))
    invoice_currency: Mapped[str] = mapped_column(String(3))
    # Kind-specific header fields (policy, GOP, case no., partner invoice no., commission …).
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    rate: Mapped[Decimal | None] = mapped_column(Numeric(28, 12))
    rate_date: Mapped[date | None] = mapped_column(Date)
    price_total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    vat_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credited_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    issued_by: Mapped[str | None] = mapped_column(String(128))
    issued_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    @property
    def due_minor(self) -> int:
        return self.total_minor - self.credited_minor

    @property
    def outstanding_minor(self) -> int:
        return self.due_minor - self.paid_minor


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        UniqueConstraint("invoice_id", "position"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_minor > 0", name="price_positive"),
        CheckConstraint(_in("vat_category", VAT_CATEGORIES), name="vat_category"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(String(500))
    code: Mapped[str | None] = mapped_column(String(64))
    service_date: Mapped[date | None] = mapped_column(Date)
    quantity: Mapped[Decimal] = mapped_column(Numeric(14, 3))
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    vat_category: Mapped[str] = mapped_column(String(8), default="exempt")
    # Filled at issue from the kind's rules and the portal's dated VAT table.
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    converted_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    vat_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credited: Mapped[bool] = mapped_column(Boolean, default=False)


class CreditNote(Base):
    """Кредит-нота: cancels the whole invoice or some of its lines, in its own number series."""

    __tablename__ = "credit_notes"
    __table_args__ = (
        UniqueConstraint("portal_id", "series", "year", "seq"),
        UniqueConstraint("portal_id", "idempotency_key"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    series: Mapped[str] = mapped_column(String(16))
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(40))
    full: Mapped[bool] = mapped_column(Boolean)
    issue_date: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    line_ids: Mapped[list[int]] = mapped_column(JsonDoc, default=list)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    vat_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InvoicePayment(Base):
    """Money received (`in`) or paid out (`out`). A reversal is a compensating row with sign -1."""

    __tablename__ = "invoice_payments"
    __table_args__ = (
        UniqueConstraint("portal_id", "idempotency_key"),
        UniqueConstraint("reverses_payment_id"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("sign IN (1, -1)", name="sign"),
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        CheckConstraint(_in("method", INVOICE_PAYMENT_METHODS), name="method"),
        CheckConstraint("sign = 1 OR reverses_payment_id IS NOT NULL", name="reversal_has_target"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    counterparty_id: Mapped[int] = mapped_column(ForeignKey("counterparties.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))
    sign: Mapped[int] = mapped_column(SmallInteger, default=1)
    payment_date: Mapped[date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(16))
    bank_reference: Mapped[str | None] = mapped_column(String(100))
    reverses_payment_id: Mapped[int | None] = mapped_column(ForeignKey("invoice_payments.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentAllocation(Base):
    __tablename__ = "payment_allocations"
    __table_args__ = (
        UniqueConstraint("payment_id", "invoice_id"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("invoice_payments.id", ondelete="CASCADE"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class CbrRateDay(Base):
    """Which published set answers a requested day: a Sunday maps to Saturday's `ValCurs/@Date`."""

    __tablename__ = "cbr_rate_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    effective_date: Mapped[date] = mapped_column(Date)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class CbrRate(Base):
    __tablename__ = "cbr_rates"
    __table_args__ = (
        UniqueConstraint("effective_date", "char_code"),
        CheckConstraint("nominal > 0", name="nominal_positive"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    effective_date: Mapped[date] = mapped_column(Date)
    char_code: Mapped[str] = mapped_column(String(3))
    nominal: Mapped[int] = mapped_column(Integer)
    # RUB per `nominal` units, exactly as published (4 decimals).
    value: Mapped[Decimal] = mapped_column(Numeric(18, 4))


class InvoiceDocument(Base):
    """A rendered file in the patient's (deal's) folder. Never overwritten: regeneration adds a version."""

    __tablename__ = "invoice_documents"
    __table_args__ = (UniqueConstraint("invoice_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[str] = mapped_column(String(64), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))
    version: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(500))
    template_version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
