"""What the amoCRM widget needs from us besides the panel: its Digital Pipeline action's hidden settings."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from connectors.amocrm.hooks import DP_SECRET_SETTING

from .. import runtime
from ..amocrm_hooks import dp_secret_for, install_dp_secret
from ..errors import Conflict
from .auth import current_portal, requires
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc

__all__ = ["amocrm_api"]

amocrm_api = Blueprint("amocrm_api", __name__, url_prefix="/api/v1/amocrm")


def _amo_portal() -> Any:
    portal = db_session().merge(current_portal())
    if portal.kind != "amocrm":
        raise Conflict(
            f"this is a {portal.kind} portal; Digital Pipeline settings exist only on amoCRM",
            code="wrong_portal_kind",
            fields={"portal": [f"is {portal.kind}, not amocrm"]},
        )
    return portal


def _document(secret: str) -> dict[str, Any]:
    settings = runtime.current().settings
    return {
        "setting": DP_SECRET_SETTING,
        "secret": secret,
        "webhook_url": f"{settings.public_base_url}/hooks/amocrm/dp",
    }


@amocrm_api.get("/dp-settings")
@api_doc(
    summary="The hidden value the widget's dpSettings() puts into each Digital Pipeline action (admins)",
    tags=["amocrm"],
    errors=(409,),
)
@requires("admin")
@mutation
def dp_settings() -> Any:
    """amo echoes the value back in every DP hook, which is how a hook proves it comes from this account's
    action; admins only, since whoever holds it can post DP hooks."""
    # A GET that may install the secret on first use: the same unit of work as any mutation.
    portal = _amo_portal()
    return _document(dp_secret_for(portal, runtime.current().settings.secret_key))


@amocrm_api.post("/dp-settings/rotate")
@api_doc(
    summary="Rotate the Digital Pipeline secret (DP actions saved before need their form saved again)",
    tags=["amocrm"],
    errors=(409,),
)
@requires("admin")
@mutation
def rotate_dp_settings() -> Any:
    portal = _amo_portal()
    return _document(install_dp_secret(portal, runtime.current().settings.secret_key))
