"""Installing, updating and uninstalling the Bitrix24 app: one Portal per `member_id`.

The install page (a frame POST with the admin's tokens) and the `ONAPPINSTALL` callback may come in
either order, or only one of them (research/bitrix24.md §1.2-1.3): whichever comes first creates the
portal, the other completes it. Both are proven by `app.info` on the OAuth server, which must name our
`client_id`, the payload's `member_id` and domain; `application_token` arrives with the callback (and in
newer frames) and is stored as a digest only. Registrations are synced with the admin's token, and the
page calls `BX24.installFinish()` only after every one succeeded.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from connectors.bitrix24.events import app_token_digest, app_token_matches
from connectors.bitrix24.install import BindFailed, Endpoints, SyncReport, sync
from connectors.bitrix24.oauth import oauth_host, token_from_payload
from connectors.errors import Rejected
from connectors.types import OAuthToken

from .bitrix24_client import AUTH_CONNECTOR, b24_oauth, b24_settings, build_client
from .journey import install_templates
from .models import OutboxJob, Portal, utcnow
from .portals import create_portal
from .runtime import Runtime
from .tokens import DbTokenSource

__all__ = [
    "APP_VERSION",
    "InstallRefused",
    "Installed",
    "rebind",
    "record_install",
    "uninstall",
    "verify_frame",
]

log = logging.getLogger(__name__)

APP_VERSION = 1
"""Bump with every change to what `connectors.bitrix24.install.sync` registers: a portal bound at an
older version is re-synced on the next admin open or by `clinicbridge bitrix24 rebind`."""


class InstallRefused(Exception):
    """A payload that does not prove itself; `field` names what failed, `status` the HTTP answer."""

    def __init__(self, field: str, reason: str, status: int = 401) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.status = field, reason, status


@dataclass(frozen=True)
class Installed:
    portal_id: int
    slug: str
    created: bool


def verify_frame(
    rt: Runtime, *, auth_id: str, server_endpoint: str | None, member_id: str, domain: str
) -> dict[str, Any]:
    """`app.info` on the OAuth server for this token must name us, this portal and this domain."""
    if not auth_id:
        raise InstallRefused("AUTH_ID", "required", 400)
    if not member_id:
        raise InstallRefused("member_id", "required", 400)
    try:
        oauth_host(server_endpoint, "SERVER_ENDPOINT")
    except Rejected as exc:
        raise InstallRefused("SERVER_ENDPOINT", str(exc), 400) from None
    oauth = b24_oauth(rt)
    try:
        info = oauth.app_info(server_endpoint, auth_id)
    except Rejected as exc:
        raise InstallRefused("AUTH_ID", str(exc)) from None
    install = info.get("install") if isinstance(info.get("install"), dict) else {}
    if info.get("client_id") != oauth.client_id:
        raise InstallRefused("AUTH_ID", "the token belongs to another application")
    if str(install.get("member_id") or "") != member_id:
        raise InstallRefused("member_id", "does not match the token's portal")
    if domain and str(install.get("domain") or "").lower() != domain.lower():
        raise InstallRefused("DOMAIN", "does not match the token's portal")
    return info


def _set_b24(portal: Portal, **values: Any) -> None:
    settings = dict(portal.settings or {})
    settings["bitrix24"] = {**(settings.get("bitrix24") or {}), **values}
    portal.settings = settings  # a new dict: the JSON column only notices assignment


def record_install(
    rt: Runtime,
    *,
    member_id: str,
    domain: str,
    token: OAuthToken | None,
    application_token: str | None,
    version: str | None = None,
) -> Installed:
    """Create or complete (or reactivate) the portal for `member_id`; the caller verified the payload."""
    with rt.db.transaction() as session:
        portal = session.scalar(
            select(Portal).where(Portal.kind == "bitrix24", Portal.external_id == member_id)
        )
        created = portal is None
        if portal is None:
            base = "b24-" + "".join(ch if ch.isalnum() else "-" for ch in domain.split(".")[0].lower())[:40]
            slug = (
                base
                if session.scalar(select(Portal.id).where(Portal.slug == base)) is None
                else (f"{base}-{secrets.token_hex(3)}")
            )
            portal = create_portal(
                session,
                kind="bitrix24",
                name=domain,
                slug=slug,
                timezone=rt.settings.default_timezone,
                currency=rt.settings.default_currency,
                external_id=member_id,
                domain=domain,
            )
        if portal.status == "uninstalled":
            # A reinstall of the same portal: its data is intact, it just becomes active again.
            portal.status, portal.uninstalled_at, portal.installed_at = "active", None, utcnow()
        portal.domain = domain
        # Seed 002's journey, disabled until mapped; a reinstall adds only the templates it lacks.
        install_templates(session, portal, "install")
        values: dict[str, Any] = {"auth_connector": AUTH_CONNECTOR}
        if application_token:
            values["app_token_sha256"] = app_token_digest(application_token)
        if version:
            values["app_version"] = version
        if token is not None:
            values.update(
                server_endpoint=token.extra.get("server_endpoint"),
                client_endpoint=token.extra.get("client_endpoint"),
                scope=token.extra.get("scope"),
            )
        _set_b24(portal, **values)
        portal_id, slug = portal.id, portal.slug
    if token is not None:
        DbTokenSource(rt, portal_id).save(token)
    return Installed(portal_id, slug, created)


def frame_token(form: dict[str, Any], server_endpoint: str | None, member_id: str, domain: str) -> OAuthToken:
    now = datetime.now(UTC)
    expires = form.get("AUTH_EXPIRES")
    return token_from_payload(
        {
            "access_token": form.get("AUTH_ID"),
            "refresh_token": form.get("REFRESH_ID"),
            "expires": int((now + timedelta(seconds=int(expires))).timestamp())
            if str(expires).isdigit()
            else None,
            "server_endpoint": server_endpoint,
            "client_endpoint": f"https://{domain}/rest/",
            "member_id": member_id,
            "scope": form.get("APPLICATION_SCOPE"),
        },
        now,
    )


def application_token_ok(portal: Portal, candidate: str | None) -> bool:
    return app_token_matches(b24_settings(portal).get("app_token_sha256"), candidate)


def rebind(rt: Runtime, portal_id: int) -> SyncReport:
    """Sync placements, events, robots and fields to this version; the outcome is kept on the portal."""
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        session.expunge(portal)
    client = build_client(portal, rt)
    endpoints = Endpoints(rt.settings.public_base_url.rstrip("/"), AUTH_CONNECTOR)
    try:
        report = sync(client.transport, endpoints)
    except BindFailed as exc:
        with rt.db.transaction() as session:
            row = session.get(Portal, portal_id)
            assert row is not None
            _set_b24(row, install_state="failed", failed_call=exc.method, failed_error=exc.error)
        raise
    with rt.db.transaction() as session:
        row = session.get(Portal, portal_id)
        assert row is not None
        _set_b24(
            row,
            install_state="bound",
            bound_version=APP_VERSION,
            storage_id=report.storage_id,
            offline_extended=report.offline_extended,
            failed_call=None,
            failed_error=None,
            bound_at=utcnow().isoformat(),
        )
    return report


def uninstall(rt: Runtime, portal_id: int, *, clean: bool) -> bool:
    """Erase tokens and the application token, cancel pending CRM work, keep the data. False on a repeat."""
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or portal.status == "uninstalled":
            return False
        portal.token_ciphertext, portal.token_expires_at = None, None
        portal.status, portal.uninstalled_at = "uninstalled", utcnow()
        settings = dict(portal.settings or {})
        b24 = {k: v for k, v in (settings.get("bitrix24") or {}).items() if k != "app_token_sha256"}
        b24.update(clean=clean, install_state="uninstalled")
        settings["bitrix24"] = b24
        portal.settings = settings
        session.execute(
            update(OutboxJob)
            .where(OutboxJob.portal_id == portal_id, OutboxJob.state == "pending")
            .values(state="cancelled", last_error="Bitrix24 app uninstalled")
        )
    return True
