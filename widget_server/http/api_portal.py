"""The calling portal, its settings and the mapping of CRM users to app roles."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from .. import runtime
from ..attention import portal_attention
from ..errors import NotFound
from ..models import PortalUser
from ..portal_settings import record_version, settings_document
from ..registry import crm_for
from ..users import set_roles, sync_users
from .auth import current_portal, current_principal, requires
from .body import load_body
from .crm_errors import crm_errors_as_api_errors
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas import PortalSchema, PortalSettingsSchema, PortalUserSchema, RolesRequestSchema

__all__ = ["portal_api"]

portal_api = Blueprint("portal_api", __name__, url_prefix="/api/v1")


def _portal_document() -> dict[str, Any]:
    portal = current_portal()
    data = PortalSchema().dump(portal)
    data["your_roles"] = sorted(current_principal().roles)
    return data


@portal_api.get("/portal")
@api_doc(summary="The portal the credential belongs to", tags=["portal"], response=PortalSchema)
@requires("viewer")
def get_portal() -> Any:
    return _portal_document()


@portal_api.get("/widget/session")
@api_doc(
    summary="Who the widget is talking as: portal, user, roles and the features they unlock", tags=["widget"]
)
@requires("viewer")
def widget_session() -> Any:
    portal, principal = current_portal(), current_principal()
    user = None
    if principal.crm_user_id is not None:
        row = db_session().scalar(
            select(PortalUser).where(
                PortalUser.portal_id == portal.id, PortalUser.crm_user_id == principal.crm_user_id
            )
        )
        user = {"crm_user_id": principal.crm_user_id, "name": row.name if row else None}
    return {
        "portal": {
            "slug": portal.slug,
            "name": portal.name,
            "kind": portal.kind,
            "timezone": portal.timezone,
            "currency": portal.currency,
            "locale": portal.locale,
        },
        "user": user,
        "roles": sorted(principal.roles),
        "features": {
            "stay": principal.has("staff"),
            "money": principal.has("finance"),
            "reversal": principal.has("admin"),
            "settings": principal.has("admin"),
        },
        # Only admins can act on these (reconnect, retry), so only they are shown them.
        "attention": _attention(portal) if principal.has("admin") else [],
    }


def _attention(portal: Any) -> list[dict[str, Any]]:
    base_url = runtime.current().settings.public_base_url
    return [item.as_dict() for item in portal_attention(db_session(), db_session().merge(portal), base_url)]


@portal_api.get("/portal/attention")
@api_doc(
    summary="What an admin must act on: lost CRM access, a block, refused webhooks, failed CRM jobs",
    tags=["portal"],
)
@requires("admin")
def attention() -> Any:
    return _attention(current_portal())


@portal_api.patch("/portal/settings")
@api_doc(
    summary="Change portal settings (partial)",
    tags=["portal"],
    request=PortalSettingsSchema,
    response=PortalSchema,
)
@requires("admin")
@mutation
def patch_settings() -> Any:
    changes = load_body(PortalSettingsSchema())
    portal = db_session().merge(current_portal())
    before = settings_document(db_session(), portal)
    if "timezone" in changes:
        portal.timezone = changes.pop("timezone")
    if "locale" in changes:
        portal.locale = changes.pop("locale")
    settings = dict(portal.settings or {})
    for key, value in changes.items():
        settings[key] = {**settings.get(key, {}), **value} if isinstance(value, dict) else value
    portal.settings = settings
    record_version(db_session(), portal, before, actor=current_principal().actor)
    return _portal_document()


@portal_api.get("/users")
@api_doc(summary="CRM users and their app roles", tags=["users"], response=PortalUserSchema(many=True))
@requires("admin")
def list_users() -> Any:
    users = db_session().scalars(
        select(PortalUser)
        .where(PortalUser.portal_id == current_principal().portal_id)
        .order_by(PortalUser.id)
    )
    return PortalUserSchema(many=True).dump(users)


@portal_api.post("/users/sync")
@api_doc(summary="Pull the user list from the CRM", tags=["users"])
@requires("admin")
@mutation
def sync_users_from_crm() -> Any:
    portal = current_portal()
    with crm_errors_as_api_errors("users"):
        crm_users = crm_for(portal, runtime.current()).list_users()
    return sync_users(db_session(), db_session().merge(portal), crm_users)


@portal_api.put("/users/<crm_user_id>/roles")
@api_doc(
    summary="Set a user's app roles",
    tags=["users"],
    request=RolesRequestSchema,
    response=PortalUserSchema,
    errors=(404,),
)
@requires("admin")
@mutation
def put_roles(crm_user_id: str) -> Any:
    body = load_body(RolesRequestSchema())
    session = db_session()
    user = session.scalar(
        select(PortalUser).where(
            PortalUser.portal_id == current_principal().portal_id, PortalUser.crm_user_id == crm_user_id
        )
    )
    if user is None:
        raise NotFound(f"no user {crm_user_id!r} in this portal; sync users first")
    set_roles(user, body["roles"])
    session.flush()
    return PortalUserSchema().dump(user)
