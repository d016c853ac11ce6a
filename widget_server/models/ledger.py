"""The stay ledger: accounts per (portal, deal), append-only entries, tariffs, articles, purchase holds.

Direction is stored as `sign` (+1 credit to the patient's account, -1 debit) and is fixed by the kind,
except for reversals, which take the opposite sign of the entry they reverse. The database enforces what
it can on both SQLite and PostgreSQL: positive amounts, sign consistent with kind, one daily charge per
(account, service date), one reversal per entry, one open account per deal, unique idempotency keys.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigIntPK, utcnow
from .portal import _in

__all__ = [
    "ACCOUNT_STATUSES",
    "CREDIT_KINDS",
    "DEBIT_KINDS",
    "ENTRY_KINDS",
    "ENTRY_SOURCES",
    "PAYMENT_METHODS",
    "PURCHASE_STATUSES",
    "ExpenseArticle",
    "LedgerEntry",
    "PurchaseRequest",
    "StayAccount",
    "Tariff",
    "TariffAssignment",
]

ENTRY_KINDS = ("deposit", "daily_charge", "charge", "purchase", "reversal", "refund")
CREDIT_KINDS = ("deposit",)
DEBIT_KINDS = ("daily_charge", "charge", "purchase", "refund")
ENTRY_SOURCES = ("widget", "robot", "scheduler", "api")
PAYMENT_METHODS = ("cash", "card", "transfer", "insurance")
ACCOUNT_STATUSES = ("open", "closed")
PURCHASE_STATUSES = ("pending", "approved", "rejected", "expired", "cancelled")


class Tariff(Base):
    __tablename__ = "tariffs"
    __table_args__ = (
        UniqueConstraint("portal_id", "name"),
        CheckConstraint("daily_rate_minor >= 0", name="rate_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    daily_rate_minor: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExpenseArticle(Base):
    """Статья расходов: what a one-off charge or purchase was for."""

    __tablename__ = "expense_articles"
    __table_args__ = (UniqueConstraint("portal_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    code: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StayAccount(Base):
    """The patient's personal account for one stay (личный счёт)."""

    __tablename__ = "stay_accounts"
    __table_args__ = (
        CheckConstraint(_in("status", ACCOUNT_STATUSES), name="status"),
        CheckConstraint("discharge_date IS NULL OR discharge_date >= admission_date", name="dates"),
        # One open account per deal; closed ones stay as history.
        Index(
            "uq_stay_accounts_open_deal",
            "portal_id",
            "deal_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8), default="open")
    currency: Mapped[str] = mapped_column(String(3))
    admission_date: Mapped[date] = mapped_column(Date)
    discharge_date: Mapped[date | None] = mapped_column(Date)
    representative_name: Mapped[str | None] = mapped_column(String(200))
    representative_phone: Mapped[str | None] = mapped_column(String(32))
    # Set while the low-balance task for the current crossing has been sent; cleared when topped up.
    low_balance_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_by: Mapped[str] = mapped_column(String(128))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]


class TariffAssignment(Base):
    """Tariff history of an account: the rate in force from `effective_from` (latest row wins per day)."""

    __tablename__ = "tariff_assignments"
    __table_args__ = (CheckConstraint("daily_rate_minor >= 0", name="rate_not_negative"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("stay_accounts.id", ondelete="CASCADE"), index=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"))
    # A snapshot: editing the catalogue later does not reprice a stay.
    daily_rate_minor: Mapped[int] = mapped_column(BigInteger)
    effective_from: Mapped[date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("account_id", "seq"),
        UniqueConstraint("portal_id", "idempotency_key"),
        UniqueConstraint("reverses_entry_id"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("sign IN (1, -1)", name="sign"),
        CheckConstraint(_in("kind", ENTRY_KINDS), name="kind"),
        CheckConstraint(_in("source", ENTRY_SOURCES), name="source"),
        CheckConstraint(
            "(kind = 'deposit' AND sign = 1)"
            " OR (kind IN ('daily_charge', 'charge', 'purchase', 'refund') AND sign = -1)"
            " OR (kind = 'reversal' AND reverses_entry_id IS NOT NULL)",
            name="direction",
        ),
        CheckConstraint("kind <> 'daily_charge' OR service_date IS NOT NULL", name="daily_has_date"),
        CheckConstraint("kind <> 'reversal' OR reason IS NOT NULL", name="reversal_has_reason"),
        CheckConstraint("method IS NULL OR " + _in("method", PAYMENT_METHODS), name="method"),
        Index(
            "uq_ledger_entries_daily_charge",
            "account_id",
            "service_date",
            unique=True,
            sqlite_where=text("kind = 'daily_charge'"),
            postgresql_where=text("kind = 'daily_charge'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Indexed through the (portal_id, idempotency_key) unique constraint, whose first column it is: a
    # separate index would be one more B-tree page written by every entry.
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("stay_accounts.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    sign: Mapped[int] = mapped_column(SmallInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # The portal-local day the operation belongs to (service date for daily charges).
    entry_date: Mapped[date] = mapped_column(Date)
    service_date: Mapped[date | None] = mapped_column(Date)
    method: Mapped[str | None] = mapped_column(String(16))
    payer: Mapped[str | None] = mapped_column(String(200))
    article_id: Mapped[int | None] = mapped_column(ForeignKey("expense_articles.id"))
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    reverses_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    purchase_request_id: Mapped[int | None] = mapped_column(BigInteger)
    overdraft_override: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # The account's balance including this entry, so that the balance is one probe of the chain's head
    # rather than a sum over the whole stay. Derived, so not hashed (`ledger verify` recomputes it).
    balance_after_minor: Mapped[int] = mapped_column(BigInteger)


class PurchaseRequest(Base):
    """Согласование закупки: a hold on the balance until the representative consents or refuses."""

    __tablename__ = "purchase_requests"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint(_in("status", PURCHASE_STATUSES), name="status"),
        CheckConstraint(
            "status <> 'approved'"
            " OR (consent_by IS NOT NULL AND consent_at IS NOT NULL AND entry_id IS NOT NULL)",
            name="approved_has_consent",
        ),
        UniqueConstraint("portal_id", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("stay_accounts.id", ondelete="CASCADE"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    article_id: Mapped[int | None] = mapped_column(ForeignKey("expense_articles.id"))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    consent_by: Mapped[str | None] = mapped_column(String(200))
    consent_channel: Mapped[str | None] = mapped_column(String(32))
    consent_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
