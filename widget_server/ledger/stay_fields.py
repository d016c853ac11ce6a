"""The deal fields the ledger keeps current in the CRM, computed from our database."""

from __future__ import annotations

from sqlalchemy.orm import Session

from connectors.types import FieldValue

from ..models import Portal, StayAccount
from ..money import minor_to_decimal
from .mirror import deal_field_map
from .summary import stay_summary

__all__ = ["stay_field_values"]


def stay_field_values(session: Session, account_id: int) -> dict[str, FieldValue]:
    account = session.get(StayAccount, account_id)
    if account is None:
        return {}
    portal = session.get(Portal, account.portal_id)
    assert portal is not None
    mapping = deal_field_map(portal)
    if not mapping:
        return {}
    summary = stay_summary(session, portal, account, recent=0)
    values: dict[str, FieldValue] = {
        # Decimal strings: CRM numeric fields take them as they are, and nothing passes through a float.
        "balance": str(minor_to_decimal(summary.balance_minor, account.currency)),
        "daily_rate": str(minor_to_decimal(summary.daily_rate_minor, account.currency)),
        "paid_through": summary.forecast.paid_through,
    }
    return {mapping[name]: value for name, value in values.items() if name in mapping}
