"""Intake leads for IDENT's GetTickets: a deal in the intake pipeline becomes a ticket IDENT pulls."""

from __future__ import annotations

from sqlalchemy import select

from connectors.types import CrmEvent, DealCreated, DealStageChanged

from ... import runtime
from ...appointments.tickets import ident_phone, offer_lead
from ...clock import now_utc
from ...models import MisLead, Portal
from ...registry import crm_for

__all__ = ["offer_intake_lead"]


def offer_intake_lead(portal_id: int, event: CrmEvent) -> None:
    """A deal created in, moved into or routed out of the intake pipeline (`mis.intake_pipeline_id`; seed
    002's «Определение типа приёма» routes leads on at once) becomes a ticket IDENT pulls, with the name,
    phone and e-mail of the deal's contact. Once per deal: later moves cost no CRM read."""
    assert isinstance(event, DealCreated | DealStageChanged)
    rt = runtime.current()
    with rt.db.transaction() as s:
        portal = s.get(Portal, portal_id)
        if portal is None or not portal.is_usable:
            return
        intake = ((portal.settings or {}).get("mis") or {}).get("intake_pipeline_id")
        known = s.scalar(
            select(MisLead.id).where(MisLead.portal_id == portal_id, MisLead.deal_id == event.deal_id)
        )
        s.expunge(portal)
    if not intake or known is not None:
        return
    if isinstance(event, DealStageChanged):
        passed = {event.stage.pipeline_id, event.previous.pipeline_id if event.previous else None}
        if intake not in passed:
            return
    crm = crm_for(portal, rt)
    deal = crm.get_deal(event.deal_id)
    if deal.is_closed or (isinstance(event, DealCreated) and deal.stage.pipeline_id != intake):
        # A deal already routed on is taken by its stage-change event, which names the pipeline it left.
        return
    contact = crm.get_contact(deal.contact_ids[0]) if deal.contact_ids else None
    phones = contact.phones if contact else ()
    # The first number IDENT can take; else the first as typed (the ticket is withheld and logged).
    phone = next((p for p in phones if ident_phone(p)), phones[0] if phones else None)
    with rt.db.transaction() as s:
        row = s.get(Portal, portal_id)
        assert row is not None
        offer_lead(
            s,
            row,
            deal_id=deal.id,
            created_at=deal.created_at or event.occurred_at or now_utc(),
            name=contact.name if contact else deal.name,
            phone=phone,
            email=contact.emails[0] if contact and contact.emails else None,
        )
