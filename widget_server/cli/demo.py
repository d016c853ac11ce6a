"""The quick start's demo: a sandbox portal with a rehabilitation clinic's patients and staff."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from ..apikeys import issue_api_key, revoke_api_key
from ..models import ApiKey, Portal, PortalUser
from ..portals import create_portal
from ..runtime import Runtime
from .context import cli_runtime

__all__ = ["demo", "ensure_demo"]

DEMO_SLUG = "demo-clinic"
QUICKSTART_KEY_NAME = "quickstart"


def ensure_demo(rt: Runtime) -> dict:
    """Create (or reuse) the demo portal and its data, map demo roles, and issue a fresh admin key.

    Re-running revokes the previous quick-start key, so only the last printed key works.
    """
    from ..jobs.periodic import portal_today
    from ..sandbox.crm import SandboxCrm
    from ..sandbox.demo import seed_demo
    from ..users import sync_users

    with rt.db.transaction() as session:
        portal = session.scalar(select(Portal).where(Portal.slug == DEMO_SLUG))
        if portal is None:
            portal = create_portal(
                session,
                kind="sandbox",
                slug=DEMO_SLUG,
                name="Реабилитационный центр «Демо»",
                timezone=rt.settings.default_timezone,
                currency=rt.settings.default_currency,
            )
        portal_id, timezone, today = portal.id, portal.timezone, portal_today(portal)

    crm = SandboxCrm(rt.db, portal_id, timezone=timezone)
    summary = seed_demo(crm, today=today)
    crm_users = crm.list_users()

    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        sync_users(session, portal, crm_users)
        roles_by_user = {str(u["id"]): u["role"] for u in summary.get("users", []) if u.get("role")}
        for user in session.scalars(select(PortalUser).where(PortalUser.portal_id == portal_id)):
            if user.crm_user_id in roles_by_user and not user.roles:
                user.roles = [roles_by_user[user.crm_user_id]]
        for old in session.scalars(
            select(ApiKey).where(ApiKey.portal_id == portal_id, ApiKey.name == QUICKSTART_KEY_NAME)
        ):
            revoke_api_key(session, old)
        issued = issue_api_key(session, portal, role="admin", name=QUICKSTART_KEY_NAME)
        return {
            "portal_id": portal_id,
            "slug": DEMO_SLUG,
            "deals": len(summary.get("deals", [])),
            "users": len(crm_users),
            "api_key": issued.plaintext,
        }


@click.group()
def demo() -> None:
    """Demo data."""


@demo.command("seed")
def demo_seed() -> None:
    """Create the demo sandbox portal and print a fresh admin API key."""
    click.echo(json.dumps(ensure_demo(cli_runtime()), ensure_ascii=False, indent=2))
