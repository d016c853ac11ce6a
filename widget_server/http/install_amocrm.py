"""amoCRM install (OAuth consent and redirect) and the "access revoked" hook (research/amocrm.md §1)."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Blueprint, jsonify, redirect, request, session
from sqlalchemy import select

from connectors.amocrm.oauth import consent_url, disconnect_signature_valid, validate_referer
from connectors.errors import ConnectorError, Rejected

from .. import runtime
from ..amocrm_install import AmoNotConfigured, amo_oauth, complete_install, uninstall
from ..errors import ApiError, Forbidden, NotFound
from ..jobs.amocrm import PENDING_CODE_KEY
from ..models import Portal
from .lifecycle import db_session

__all__ = ["amocrm_install"]

log = logging.getLogger(__name__)

amocrm_install = Blueprint("amocrm_install", __name__)

STATE_TTL_S = 600
CODE_TTL_S = 20 * 60 - 60
"""An authorization code lives 20 minutes; keep it a minute less so a late job never sends a dead code."""


def _oauth() -> Any:
    try:
        return amo_oauth(runtime.current())
    except AmoNotConfigured as exc:
        raise ApiError(str(exc), code="amocrm_not_configured", status=503) from None


@amocrm_install.get("/install/amocrm")
def start_install() -> Any:
    oauth = _oauth()
    state = secrets.token_urlsafe(24)
    # Single use and bound to this browser: the state is in Redis for 10 minutes and in the signed cookie.
    runtime.current().redis.set(f"cb:amo:state:{state}", "1", ex=STATE_TTL_S)
    session["amo_state"] = state
    brand = request.args.get("brand", "amocrm.ru")
    return redirect(consent_url(oauth.client_id, state, brand=brand), code=302)


@amocrm_install.get("/install/amocrm/callback")
def install_callback() -> Any:
    if request.args.get("error"):
        raise ApiError(
            f"installation declined in amoCRM ({request.args['error']})",
            code="install_declined",
            fields={"error": [request.args["error"]]},
        )
    try:
        host = validate_referer(request.args.get("referer"))
    except Rejected as exc:
        raise ApiError(
            str(exc), code="invalid_referer", fields={"referer": ["not an amoCRM/Kommo host"]}
        ) from None
    oauth = _oauth()
    if request.args.get("client_id") not in (None, oauth.client_id):
        raise ApiError(
            "client_id: another integration", code="invalid_client", fields={"client_id": ["mismatch"]}
        )
    code = request.args.get("code")
    if not code:
        raise ApiError("code: missing", code="missing_code", fields={"code": ["required"]})
    rt = runtime.current()
    if request.args.get("from_widget"):
        # Marketplace install: amo waits at most 3 s and never resends, so answer now and exchange in a job.
        rt.redis.set(PENDING_CODE_KEY.format(host=host), code, ex=CODE_TTL_S)
        rt.queue("default").enqueue("widget_server.jobs.amocrm.finish_widget_install", host, result_ttl=600)
        return jsonify(status="accepted")
    state = request.args.get("state", "")
    expected = session.pop("amo_state", None)
    if not state or state != expected or not rt.redis.getdel(f"cb:amo:state:{state}"):
        raise ApiError(
            "state: invalid, expired or already used; start the installation again",
            code="invalid_state",
            fields={"state": ["invalid, expired or already used"]},
        )
    try:
        installed = complete_install(rt, host, code)
    except ConnectorError as exc:
        raise ApiError(
            f"amoCRM did not complete the installation: {exc}", code="install_failed", status=502
        ) from None
    return jsonify(status="installed", portal=installed.slug, reinstalled=installed.reinstalled)


@amocrm_install.get("/hooks/amocrm/disconnect")
def disconnect() -> Any:
    oauth = _oauth()
    account_id = request.args.get("account_id", "")
    if request.args.get("client_uuid") != oauth.client_id or not disconnect_signature_valid(
        oauth.client_id, oauth.client_secret, account_id, request.args.get("signature", "")
    ):
        raise Forbidden(
            "signature does not verify",
            code="invalid_signature",
            fields={"signature": ["does not match client_id|account_id"]},
        )
    portal_id = db_session().scalar(
        select(Portal.id).where(Portal.kind == "amocrm", Portal.external_id == account_id)
    )
    db_session().rollback()
    if portal_id is None:
        raise NotFound(f"no amoCRM account {account_id} installed")
    changed = uninstall(runtime.current(), portal_id)
    log.info("amoCRM account %s disconnected (%s)", account_id, "uninstalled" if changed else "repeat")
    return jsonify(status="uninstalled")
