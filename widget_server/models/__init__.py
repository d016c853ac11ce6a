"""Persistence: one module per aggregate. Every domain row carries portal_id."""

from .apikey import ApiKey
from .base import Base, utcnow
from .ledger import (
    ENTRY_KINDS,
    PAYMENT_METHODS,
    ExpenseArticle,
    LedgerEntry,
    PurchaseRequest,
    StayAccount,
    Tariff,
    TariffAssignment,
)
from .portal import PORTAL_KINDS, PORTAL_STATUSES, ROLES, Portal, PortalUser, implied_roles
from .reliability import (
    INBOX_OUTCOMES,
    OUTBOX_STATES,
    IdempotencyRecord,
    InboxEvent,
    OutboxJob,
    PeriodicRun,
)

__all__ = [
    "ENTRY_KINDS",
    "INBOX_OUTCOMES",
    "OUTBOX_STATES",
    "PAYMENT_METHODS",
    "PORTAL_KINDS",
    "PORTAL_STATUSES",
    "ROLES",
    "ApiKey",
    "Base",
    "ExpenseArticle",
    "IdempotencyRecord",
    "InboxEvent",
    "LedgerEntry",
    "OutboxJob",
    "PeriodicRun",
    "Portal",
    "PortalUser",
    "PurchaseRequest",
    "StayAccount",
    "Tariff",
    "TariffAssignment",
    "implied_roles",
    "utcnow",
]
