"""Installing and uninstalling amoCRM accounts: one Portal per amoCRM account id.

A reinstall (same account) reactivates the same portal with its data; an uninstall wipes the tokens,
cancels what was waiting for the CRM, and keeps the ledger.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update

from connectors.amocrm.oauth import AmoOAuth, fetch_account
from connectors.amocrm.webhooks import subscribe_webhooks
from connectors.errors import ConnectorError

from .amocrm_hooks import install_webhook_secret
from .journey import install_templates
from .models import OutboxJob, Portal, utcnow
from .portals import create_portal
from .runtime import Runtime
from .tokens import DbTokenSource

__all__ = ["AmoNotConfigured", "amo_oauth", "complete_install", "redirect_uri", "uninstall"]

log = logging.getLogger(__name__)


class AmoNotConfigured(RuntimeError):
    """AMO_CLIENT_ID / AMO_CLIENT_SECRET are not set."""


def redirect_uri(rt: Runtime) -> str:
    return rt.settings.amo_redirect_uri or f"{rt.settings.public_base_url}/install/amocrm/callback"


def amo_oauth(rt: Runtime) -> AmoOAuth:
    settings = rt.settings
    if not (settings.amo_client_id and settings.amo_client_secret):
        raise AmoNotConfigured("amoCRM integration is not configured (AMO_CLIENT_ID, AMO_CLIENT_SECRET)")
    return AmoOAuth(settings.amo_client_id, settings.amo_client_secret, redirect_uri(rt))


@dataclass(frozen=True)
class Installed:
    portal_id: int
    slug: str
    reinstalled: bool


def complete_install(rt: Runtime, host: str, code: str) -> Installed:
    """Exchange the code, identify the account, create or reactivate its portal, store the tokens."""
    token = amo_oauth(rt).exchange_code(host, code)
    account = fetch_account(host, token.access_token)
    account_id = str(account["id"])
    with rt.db.transaction() as session:
        portal = session.scalar(
            select(Portal).where(Portal.kind == "amocrm", Portal.external_id == account_id)
        )
        reinstalled = portal is not None
        if portal is None:
            slug = f"amo-{account['subdomain']}".lower()[:60]
            if session.scalar(select(Portal.id).where(Portal.slug == slug)) is not None:
                slug = f"{slug[:50]}-{secrets.token_hex(3)}"
            portal = create_portal(
                session,
                kind="amocrm",
                name=str(account.get("name") or account["subdomain"]),
                slug=slug,
                timezone=rt.settings.default_timezone,
                currency=str(account.get("currency") or rt.settings.default_currency),
                external_id=account_id,
                domain=host,
            )
        portal.domain, portal.status, portal.uninstalled_at = host, "active", None
        portal.installed_at = utcnow()
        # Seed 002's journey, disabled until mapped; a reinstall adds only the templates it lacks.
        install_templates(session, portal, "install")
        portal_id, slug = portal.id, portal.slug
    DbTokenSource(rt, portal_id).save(token)
    _subscribe(rt, portal_id, host, token.access_token)
    return Installed(portal_id=portal_id, slug=slug, reinstalled=reinstalled)


def _subscribe(rt: Runtime, portal_id: int, host: str, access_token: str) -> None:
    """Subscribe our hook URL. A refusal (plan or rights, research open question 5) does not fail the
    install: it is recorded in the portal's settings for the admin to see."""
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        secret = install_webhook_secret(portal)
        slug = portal.slug
    prefix = f"{rt.settings.public_base_url}/hooks/amocrm/{slug}/"
    try:
        events = subscribe_webhooks(host, access_token, prefix + secret, ours_prefix=prefix)
        state: dict[str, object] = {"status": "subscribed", "events": events}
    except ConnectorError as exc:
        log.warning("amoCRM webhooks not subscribed for portal %s: %s", portal_id, exc)
        state = {"status": "refused", "reason": str(exc)[:300]}
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        settings = dict(portal.settings or {})
        settings["amocrm"] = {**(settings.get("amocrm") or {}), "webhooks": state}
        portal.settings = settings


def uninstall(rt: Runtime, portal_id: int) -> bool:
    """Wipe tokens, cancel pending CRM work, mark uninstalled. False if it already was (a repeat)."""
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or portal.status == "uninstalled":
            return False
        portal.token_ciphertext, portal.token_expires_at = None, None
        portal.status, portal.uninstalled_at = "uninstalled", utcnow()
        session.execute(
            update(OutboxJob)
            .where(OutboxJob.portal_id == portal_id, OutboxJob.state == "pending")
            .values(state="cancelled", last_error="portal uninstalled")
        )
    return True
