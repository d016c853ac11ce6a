"""IDENT's GetTickets: our intake leads as IDENT заявки (research/mis.md §1.3).

Stateless: every call returns every lead created in [from, to], in a stable order (creation time, then our
row id), paged by limit/offset, so IDENT may re-read a window as often as it likes and de-duplicates by `Id`.
A lead whose phone is not a valid number is withheld (IDENT wants exactly one full number) and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import MisLead, Portal
from .matching import e164

__all__ = ["ATTRIBUTION_KEYS", "ident_phone", "offer_lead", "tickets"]

log = logging.getLogger(__name__)

ATTRIBUTION_KEYS = {
    "utm_source": "UtmSource",
    "utm_medium": "UtmMedium",
    "utm_campaign": "UtmCampaign",
    "utm_term": "UtmTerm",
    "utm_content": "UtmContent",
    "referer": "HttpReferer",
}


def ident_phone(raw: str | None) -> str | None:
    """E.164, or None. `+89…` is someone's `8 9…` with a stray plus: IDENT reads no country code +8 there."""
    if raw is None:
        return None
    text = raw.strip()
    if text.startswith("+89"):
        text = text[1:]
    return e164(text)


def offer_lead(
    session: Session,
    portal: Portal,
    *,
    deal_id: str,
    created_at: datetime,
    name: str,
    phone: str | None,
    email: str | None = None,
    form_name: str | None = None,
    comment: str | None = None,
    attribution: Mapping[str, str] | None = None,
) -> MisLead:
    """Record an intake-pipeline lead for IDENT to pull; the same deal again updates it."""
    lead = session.scalar(select(MisLead).where(MisLead.portal_id == portal.id, MisLead.deal_id == deal_id))
    if lead is None:
        lead = MisLead(portal_id=portal.id, deal_id=deal_id)
        session.add(lead)
    lead.lead_created_at = created_at
    lead.name = name
    lead.phone_raw = phone
    lead.phone_e164 = ident_phone(phone)
    lead.email = email
    lead.form_name = form_name
    lead.comment = comment
    lead.attribution = {k: v for k, v in (attribution or {}).items() if k in ATTRIBUTION_KEYS}
    session.flush()
    return lead


def tickets(
    session: Session, portal: Portal, since: datetime, until: datetime, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    tz = ZoneInfo(portal.timezone)
    rows = session.scalars(
        select(MisLead)
        .where(
            MisLead.portal_id == portal.id,
            MisLead.lead_created_at >= since,
            MisLead.lead_created_at <= until,
        )
        .order_by(MisLead.lead_created_at, MisLead.id)
    ).all()
    out: list[dict[str, Any]] = []
    # Withheld leads are skipped before paging, so a page never has a hole and offsets stay stable.
    for lead in rows:
        phone = ident_phone(lead.phone_raw)
        if phone is None:
            log.warning("ident ticket withheld: invalid phone", extra={"deal_id": lead.deal_id})
            continue
        ticket: dict[str, Any] = {
            "Id": f"cb-{lead.deal_id}",
            "DateAndTime": lead.lead_created_at.astimezone(tz).isoformat(timespec="seconds"),
            "ClientPhone": phone,
            "ClientFullName": lead.name,
        }
        if lead.email:
            ticket["ClientEmail"] = lead.email
        if lead.form_name:
            ticket["FormName"] = lead.form_name
        if lead.comment:
            ticket["Comment"] = lead.comment
        for key, name in ATTRIBUTION_KEYS.items():
            if lead.attribution.get(key):
                ticket[name] = lead.attribution[key]
        out.append(ticket)
    return out[offset : offset + limit]
