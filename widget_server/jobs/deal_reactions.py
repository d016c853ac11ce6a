"""What our features do when a person changes a deal in the CRM (never for our own echoes)."""

from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from sqlalchemy import select

from connectors.types import CrmEvent, DealUpdated, FieldValue

from .. import runtime
from ..ledger.mirror import deal_field_map, queue_stay_sync
from ..ledger.stay_fields import stay_field_values
from ..models import Portal, StayAccount
from ..registry import crm_for

__all__ = ["restore_stay_fields"]

log = logging.getLogger(__name__)


def _as_date(value: FieldValue, tz: ZoneInfo) -> date | None:
    """A date as a hook or a read may carry it: a date, ISO text, dd.mm.yyyy, or a unix time (amo's hooks
    send date fields as the timestamp of local midnight)."""
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text), tz).date()
        if len(text) >= 10 and text[2] == "." and text[5] == ".":
            day, month, year = text[:10].split(".")
            return date(int(year), int(month), int(day))
        return date.fromisoformat(text[:10])
    except (ValueError, OverflowError):
        return None


def _same(ours: FieldValue, theirs: FieldValue | None, tz: ZoneInfo) -> bool:
    """Equal as the CRM would show them: 12300.00 = "12300"; a date in any of its spellings; empty = None."""
    if ours in (None, "") or theirs in (None, ""):
        return ours in (None, "") and theirs in (None, "")
    if isinstance(ours, date):
        return ours == _as_date(theirs, tz)
    try:
        return Decimal(str(ours)) == Decimal(str(theirs))
    except InvalidOperation:
        return str(ours) == str(theirs)


def _differing(ours: dict[str, FieldValue], theirs: dict[str, FieldValue], tz: ZoneInfo) -> list[str]:
    return sorted(field for field, value in ours.items() if not _same(value, theirs.get(field), tz))


def restore_stay_fields(portal_id: int, event: CrmEvent) -> None:
    """Put our ledger figures back when a person overwrote them on the deal.

    The balance, daily rate and paid-through date on a deal mirror our books; a figure typed in by hand
    would show money no entry backs. The hook's own values are only a hint (amo sends every field of the
    lead, and hooks arrive late and out of order), so a suspicious one is checked against a fresh read of
    the deal before anything is queued.
    """
    assert isinstance(event, DealUpdated)
    rt = runtime.current()
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or not deal_field_map(portal):
            return
        account_id = session.scalar(
            select(StayAccount.id).where(
                StayAccount.portal_id == portal_id,
                StayAccount.deal_id == event.deal_id,
                StayAccount.status == "open",
            )
        )
        if account_id is None:
            return
        ours = stay_field_values(session, account_id)
        tz = ZoneInfo(portal.timezone)
    if not ours or not _differing(ours, {k: v for k, v in event.fields.items() if k in ours}, tz):
        return
    deal = crm_for(portal, rt).get_deal(event.deal_id)
    changed = _differing(ours, dict(deal.fields), tz)
    if not changed:
        return
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        account = session.get(StayAccount, account_id)
        if portal is None or account is None:
            return
        queue_stay_sync(session, portal, account)
    log.info("portal %s deal %s: ledger fields %s edited in the CRM; restoring", portal_id, deal.id, changed)
