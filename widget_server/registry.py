"""The one place that maps a portal to its concrete connector."""

from __future__ import annotations

import logging

from connectors.base import CrmClient

from .models import Portal
from .runtime import Runtime

__all__ = ["UnsupportedPortal", "crm_for"]

log = logging.getLogger(__name__)



class UnsupportedPortal(LookupError):
    """No connector is installed for this portal's kind."""


def crm_for(portal: Portal, runtime: Runtime) -> CrmClient:
    if portal.kind == "sandbox":
        from .sandbox.crm import SandboxCrm

        return SandboxCrm(runtime.db, portal.id, timezone=portal.timezone)
    if portal.kind == "amocrm":
        return _amocrm(portal, runtime)
    if portal.kind == "bitrix24":
        from .bitrix24_client import build_client

        return build_client(portal, runtime)
    raise UnsupportedPortal(f"no CRM connector for portal kind {portal.kind!r} yet")


def _shared_amo_field_defs(runtime: Runtime):  # type: ignore[no-untyped-def]
    """One `FieldDefsCache` per runtime (so per process): every outbox wake-up builds a client, the field
    definitions stay shared."""
    if "amo_field_defs" not in runtime.shared:
        from connectors.amocrm.fields import FieldDefsCache

        runtime.shared["amo_field_defs"] = FieldDefsCache(ttl_s=300.0)
    return runtime.shared["amo_field_defs"]


def _amocrm(portal: Portal, runtime: Runtime) -> CrmClient:
    from connectors.amocrm.client import AmoCrmClient
    from connectors.amocrm.limits import amo_http, amo_limiter
    from connectors.created import RedisCreatedStore

    from .amocrm_hooks import remember_own_write
    from .amocrm_install import amo_oauth
    from .tokens import DbTokenSource

    settings = runtime.settings
    host = portal.domain or ""
    oauth = amo_oauth(runtime)
    portal_id = portal.id
    amo_settings = dict((portal.settings or {}).get("amocrm") or {})

    def blocked(reason: str) -> None:
        # A non-JSON 403 is amo's nginx: the account or our IP is blocked. Stop calling until an admin
        # runs `clinicbridge portal unblock`.
        with runtime.db.transaction() as session:
            row = session.get(Portal, portal_id)
            if row is not None and row.status == "active":
                row.status = "blocked"
        log.error("amoCRM portal %s blocked: %s", portal_id, reason)

    def moved(new_host: str) -> None:
        # The account was renamed or moved: its API, token endpoint and CORS origin live at the new host.
        with runtime.db.transaction() as session:
            row = session.get(Portal, portal_id)
            if row is not None:
                row.domain = new_host
        log.warning("amoCRM portal %s moved from %s to %s", portal_id, host, new_host)

    limiter = amo_limiter(
        runtime.redis,
        account_id=portal.external_id,
        rps=settings.amo_rate_limit_rps,
        scope=settings.amo_rate_scope,
    )
    return AmoCrmClient(
        base_url=f"https://{host}",
        tokens=DbTokenSource(runtime, portal_id),
        refresh=lambda token: oauth.refresh_following_moves(host, token, on_moved=moved),
        http=amo_http(name=f"amocrm:{portal.slug}", limiter=limiter),
        timezone=portal.timezone,
        on_blocked=blocked,
        field_codes=amo_settings.get("field_codes"),
        reference_fields=amo_settings.get("reference_fields"),
        created=RedisCreatedStore(runtime.redis, f"cb:amo:created:{portal_id}"),
        field_cache=_shared_amo_field_defs(runtime),
        on_write=lambda entity, entity_id, updated_at: remember_own_write(
            runtime.redis, portal_id, entity, entity_id, updated_at
        ),
    )
