"""Persistence: one module per aggregate. Every domain row carries portal_id."""

from .apikey import ApiKey
from .base import Base, utcnow
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
    "INBOX_OUTCOMES",
    "OUTBOX_STATES",
    "PORTAL_KINDS",
    "PORTAL_STATUSES",
    "ROLES",
    "ApiKey",
    "Base",
    "IdempotencyRecord",
    "InboxEvent",
    "OutboxJob",
    "PeriodicRun",
    "Portal",
    "PortalUser",
    "implied_roles",
    "utcnow",
]
