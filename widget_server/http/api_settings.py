"""The settings screen's API (admins): the versioned settings document, the CRM's own fields, pipelines
and users for the pickers (through `CrmClient`), the history of changes, and the inbox log."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from zoneinfo import available_timezones

from babel.numbers import list_currencies
from flask import Blueprint
from sqlalchemy import select

from .. import runtime
from ..errors import ApiError
from ..models import ROLES, InboxEvent, Portal, PortalSettingsVersion
from ..portal_settings import Catalogue, apply_settings, current_version, settings_document
from ..registry import crm_for
from .auth import current_portal, current_principal, requires
from .body import load_body, load_query
from .crm_errors import crm_errors_as_api_errors
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_settings import (
    CatalogueSchema,
    InboxEventSchema,
    InboxQuerySchema,
    SettingsDocumentSchema,
    SettingsPutSchema,
    SettingsVersionSchema,
)

__all__ = ["settings_api"]

settings_api = Blueprint("settings_api", __name__, url_prefix="/api/v1")


def _document(portal: Portal) -> dict[str, Any]:
    session = db_session()
    return {"version": current_version(session, portal.id), "settings": settings_document(session, portal)}


@settings_api.get("/settings")
@api_doc(
    summary="Portal settings as one versioned document", tags=["settings"], response=SettingsDocumentSchema
)
@requires("admin")
def get_settings() -> Any:
    return _document(current_portal())


def _sandbox_catalogue(portal: Portal) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """The sandbox CRM keeps free-form deal fields and the demo pipeline: list what it really holds."""
    from ..sandbox.demo import DEMO_PIPELINE
    from ..sandbox.models import SandboxDeal

    session = db_session()
    keys: set[str] = set()
    stages: dict[str, set[str]] = {}
    for fields, pipeline, stage in session.execute(
        select(SandboxDeal.fields, SandboxDeal.pipeline_id, SandboxDeal.stage_id).where(
            SandboxDeal.portal_id == portal.id
        )
    ):
        keys |= set(fields or {})
        stages.setdefault(pipeline, set()).add(stage)
    keys |= set(((portal.settings or {}).get("deal_fields") or {}).values())
    names = dict(DEMO_PIPELINE["stages"])
    stages.setdefault(DEMO_PIPELINE["id"], set()).update(names)
    pipelines = [
        {
            "id": pipeline,
            "name": DEMO_PIPELINE["name"] if pipeline == DEMO_PIPELINE["id"] else pipeline,
            "stages": [{"id": s, "name": names.get(s, s)} for s in sorted(ids)],
        }
        for pipeline, ids in sorted(stages.items())
    ]
    return [{"id": k, "name": k} for k in sorted(keys)], pipelines


def _catalogue(portal: Portal) -> tuple[Catalogue, dict[str, bool]]:
    crm: Any = crm_for(portal, runtime.current())
    with crm_errors_as_api_errors("catalogue"):
        users = [{"id": u.id, "name": u.name} for u in crm.list_users() if u.is_active]
        fields: list[dict[str, str]] = []
        pipelines: list[dict[str, Any]] = []
        supported = {"deal_fields": True, "pipelines": True}
        # list_deal_fields / list_pipelines are the CrmClient verbs this screen needs; until every
        # connector has them, the amoCRM and Bitrix24 clients' field definitions serve the field picker.
        if hasattr(crm, "list_deal_fields"):
            fields = list(crm.list_deal_fields())
        elif hasattr(crm, "field_defs"):
            fields = [
                {"id": key, "name": getattr(d, "code", None) or key, "type": d.type}
                for key, d in crm.field_defs().items()
            ]
        if hasattr(crm, "list_pipelines"):
            pipelines = [asdict(p) for p in crm.list_pipelines()]
        if portal.kind == "sandbox":
            fields, pipelines = _sandbox_catalogue(portal)
        supported["deal_fields"] = bool(fields) or hasattr(crm, "list_deal_fields")
        supported["pipelines"] = bool(pipelines) or hasattr(crm, "list_pipelines")
    return Catalogue(deal_fields=fields, pipelines=pipelines, users=users), supported


@settings_api.get("/settings/catalogue")
@api_doc(
    summary="The CRM's deal fields, pipelines with stages and users, for the settings pickers",
    tags=["settings"],
    response=CatalogueSchema,
    errors=(502, 503),
)
@requires("admin")
def get_catalogue() -> Any:
    catalogue, supported = _catalogue(current_portal())
    return {
        "supported": supported,
        "deal_fields": catalogue.deal_fields,
        "pipelines": catalogue.pipelines,
        "users": catalogue.users,
        "timezones": sorted(available_timezones()),
        "currencies": sorted(list_currencies()),
        "roles": list(ROLES),
    }


@settings_api.put("/settings")
@api_doc(
    summary="Save settings (partial document + the version it was read at)",
    tags=["settings"],
    request=SettingsPutSchema,
    response=SettingsDocumentSchema,
    errors=(409, 502, 503),
)
@requires("admin")
@mutation
def put_settings() -> Any:
    body = load_body(SettingsPutSchema())
    expected = body.pop("version")
    portal = db_session().merge(current_portal())
    catalogue: Catalogue | None
    try:
        catalogue, _supported = _catalogue(portal)
    except ApiError as exc:
        if exc.status < 500:
            raise
        catalogue = None  # the CRM is down: what does not point into it can still be saved
    apply_settings(
        db_session(),
        portal,
        body,
        expected_version=expected,
        actor=current_principal().actor,
        catalogue=catalogue,
    )
    return _document(portal)


@settings_api.get("/settings/history")
@api_doc(
    summary="Who changed which setting, when", tags=["settings"], response=SettingsVersionSchema(many=True)
)
@requires("admin")
def get_history() -> Any:
    rows = db_session().scalars(
        select(PortalSettingsVersion)
        .where(PortalSettingsVersion.portal_id == current_portal().id)
        .order_by(PortalSettingsVersion.version.desc())
        .limit(50)
    )
    return SettingsVersionSchema(many=True).dump(rows)


@settings_api.get("/inbox")
@api_doc(
    summary="Recent webhooks and robot calls with their outcome",
    tags=["outbox"],
    query=InboxQuerySchema,
    response=InboxEventSchema(many=True),
)
@requires("admin")
def list_inbox() -> Any:
    query = load_query(InboxQuerySchema())
    statement = select(InboxEvent).where(InboxEvent.portal_id == current_portal().id)
    if "outcome" in query:
        statement = statement.where(InboxEvent.outcome == query["outcome"])
    rows = db_session().scalars(statement.order_by(InboxEvent.id.desc()).limit(query["limit"]))
    return InboxEventSchema(many=True).dump(rows)
