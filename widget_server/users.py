"""Portal users: CRM users mirrored locally, with the app roles an admin maps onto them."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.types import CrmUser

from .models import ROLES, Portal, PortalUser

__all__ = ["set_roles", "sync_users"]


def sync_users(session: Session, portal: Portal, crm_users: Iterable[CrmUser]) -> dict[str, int]:
    """Upsert CRM users. New users get no role until an admin maps one; CRM admins start as admins so a
    fresh install is never locked out. Users gone from the CRM are deactivated, never deleted (audit)."""
    existing = {
        u.crm_user_id: u for u in session.scalars(select(PortalUser).where(PortalUser.portal_id == portal.id))
    }
    seen: set[str] = set()
    added = updated = 0
    for crm_user in crm_users:
        seen.add(crm_user.id)
        user = existing.get(crm_user.id)
        if user is None:
            session.add(
                PortalUser(
                    portal_id=portal.id,
                    crm_user_id=crm_user.id,
                    name=crm_user.name,
                    email=crm_user.email,
                    roles=["admin"] if crm_user.is_admin else [],
                    active=crm_user.is_active,
                )
            )
            added += 1
        elif (user.name, user.email, user.active) != (crm_user.name, crm_user.email, crm_user.is_active):
            user.name, user.email, user.active = crm_user.name, crm_user.email, crm_user.is_active
            updated += 1
    deactivated = 0
    for crm_user_id, user in existing.items():
        if crm_user_id not in seen and user.active:
            user.active = False
            deactivated += 1
    session.flush()
    return {"added": added, "updated": updated, "deactivated": deactivated}


def set_roles(user: PortalUser, roles: Iterable[str]) -> None:
    wanted = sorted(set(roles))
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown roles {unknown}; allowed: {', '.join(ROLES)}")
    user.roles = wanted
