"""The patient's one CRM contact, and the other contacts of the same person found on the way: each gets a
«Проверить дубль» note and task, on its own intake deal where it has one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from connectors.base import CrmClient
from connectors.types import Contact, NewContact, NewTask

from ...appointments.matching import name_key
from ...appointments.tickets import ident_phone
from ...clock import now_utc
from ...models import MisLead, MisPatient

__all__ = ["DUPLICATE_TASK", "flag_duplicate", "intake_deal_of", "patient_contact"]


DUPLICATE_TASK = "Проверить дубль"


def patient_contact(
    crm: CrmClient, patient: MisPatient, deal_contact: str | None
) -> tuple[str, list[Contact]]:
    """(our contact, other CRM contacts of the same person). The contact of the inquiry's deal is ours, else
    the oldest contact with one of the patient's numbers and the same name; a name alone never matches, and a
    number the family shares matches nobody."""
    if patient.contact_id:
        return patient.contact_id, []
    same: dict[str, Contact] = {}
    phones = [p for p in (patient.phone_e164, *patient.other_phones) if p]
    if "shared_phone" not in patient.flags:
        for phone in phones:
            for contact in crm.find_contacts_by_phone(phone):
                if name_key(contact.name) == patient.name_key:
                    same[contact.id] = contact
    ordered = sorted(same.values(), key=lambda c: (len(c.id), c.id))
    if deal_contact is not None:
        return deal_contact, [c for c in ordered if c.id != deal_contact]
    if ordered:
        return ordered[0].id, ordered[1:]
    contact = crm.create_contact(
        NewContact(name=patient.name, phones=tuple(phones)),
        idempotency_key=f"mis-contact-{patient.id}",
    )
    return contact.id, []


def intake_deal_of(db: Any, portal_id: int, contact: Contact) -> str | None:
    """The untaken intake deal of a duplicate contact (by its numbers): its «Проверить дубль» goes there."""
    phones = [p for p in (ident_phone(raw) for raw in contact.phones) if p]
    if not phones:
        return None
    with db.transaction() as s:
        return s.scalar(
            select(MisLead.deal_id)
            .where(
                MisLead.portal_id == portal_id,
                MisLead.phone_e164.in_(phones),
                MisLead.appointment_id.is_(None),
            )
            .order_by(MisLead.lead_created_at.desc())
            .limit(1)
        )


def flag_duplicate(crm: CrmClient, deal_id: str, other: Contact, kept: str) -> None:
    deal = crm.get_deal(deal_id)
    responsible = deal.responsible_user_id or next((u.id for u in crm.list_users() if u.is_active), None)
    crm.add_note(
        deal_id,
        f"Контакт {other.id} «{other.name}» — тот же пациент, что и контакт {kept}: проверьте дубль",
        idempotency_key=f"mis-dup-note-{deal_id}-{other.id}",
    )
    if responsible is not None:
        crm.create_task(
            NewTask(
                deal_id=deal_id,
                responsible_user_id=responsible,
                text=f"{DUPLICATE_TASK}: контакт {other.id}",
                due_at=now_utc(),
            ),
            idempotency_key=f"mis-dup-task-{deal_id}-{other.id}",
        )
