"""The sticky owner of a lead as the CRM knows it: read through the `CrmClient` protocol only, so triggers
(jobs) and the API ask the same way whatever the platform."""

from __future__ import annotations

from connectors.base import CrmClient
from connectors.errors import Rejected
from connectors.types import Deal

__all__ = ["STICKY_OTHER_DEALS", "sticky_owners"]

STICKY_OTHER_DEALS = 3
"""How many of the contact's other open deals are read for their responsible (one request each)."""


def sticky_owners(crm: CrmClient, deal: Deal) -> tuple[str, ...]:
    """CRM user ids of the deal's main contact's responsible, its company's, and its other open deals'
    responsibles, in that order (the engine takes the first of them who is eligible). A contact or company
    gone from the CRM just gives no owner; a CRM that cannot be reached now makes the job retry."""
    if not deal.contact_ids:
        return ()
    try:
        contact = crm.get_contact(deal.contact_ids[0])
    except Rejected:
        return ()
    owners = [contact.responsible_user_id]
    if contact.company_id:
        try:
            owners.append(crm.get_company(contact.company_id).responsible_user_id)
        except Rejected:
            pass
    for other in [d for d in contact.open_deal_ids if d != deal.id][:STICKY_OTHER_DEALS]:
        try:
            owners.append(crm.get_deal(other).responsible_user_id)
        except Rejected:
            continue
    return tuple(dict.fromkeys(owner for owner in owners if owner))
