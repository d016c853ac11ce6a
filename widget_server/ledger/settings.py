"""Per-portal ledger settings (portal.settings["ledger"]), with the defaults the issue names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models import Portal

__all__ = ["LedgerSettings", "ledger_settings"]


@dataclass(frozen=True)
class LedgerSettings:
    overdraft_minor: int = 0
    """How far below zero a one-off charge or purchase may take the available balance."""
    purchase_threshold_minor: int = 0
    """Purchases above this need the representative's consent (a hold); at or below, charged at once."""
    purchase_hold_hours: int = 72
    """An unanswered purchase request expires and releases its hold after this long."""
    charge_discharge_day: bool = False
    low_balance_days: int = 3
    """A task for the responsible manager when the balance covers this many days or fewer."""


def ledger_settings(portal: Portal) -> LedgerSettings:
    raw: dict[str, Any] = dict((portal.settings or {}).get("ledger") or {})
    known = {k: v for k, v in raw.items() if k in LedgerSettings.__dataclass_fields__}
    return LedgerSettings(**known)
