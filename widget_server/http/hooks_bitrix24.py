"""Bitrix24 inbound calls: events, robots, uninstall and the deal-card tab (research/bitrix24.md §2-4).

Events and robots: the portal is `auth[member_id]`, the proof `auth[application_token]` (constant-time
digest compare). While a portal has no application token yet, the call's own user token must pass the
`app.info` check, which then stores it. Verified calls are stored in the inbox under a dedupe key and
acknowledged at once with no outgoing call; a replay answers `duplicate`. Refusals name the field.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from flask import Blueprint, jsonify, make_response, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.bitrix24.events import (
    FormError,
    app_token_digest,
    check_event,
    dedupe_key,
    parse_robot,
    redact,
)
from connectors.bitrix24.robots import ROBOTS

from .. import runtime
from ..bitrix24_client import B24NotConfigured, b24_settings
from ..bitrix24_install import InstallRefused, application_token_ok, uninstall, verify_frame
from ..bitrix24_panel import PanelSession, issue_panel_token, user_roles
from ..bitrix24_sources import cached_source_list, source_verdict
from ..errors import ApiError, Forbidden, NotFound, Unauthorized
from ..inbox import receive_event
from ..models import Portal
from ..outbox import after_commit
from .install_bitrix24 import frame_form, not_configured, refused
from .lifecycle import db_session
from .openapi import api_doc

__all__ = ["bitrix24_hooks"]

log = logging.getLogger(__name__)
bitrix24_hooks = Blueprint("bitrix24_hooks", __name__, url_prefix="/bitrix24")
_DEAL_ID = re.compile(r"^[1-9]\d{0,18}$")


def _auth(form: dict[str, Any]) -> dict[str, Any]:
    auth = form.get("auth")
    if not isinstance(auth, dict) or not isinstance(auth.get("member_id"), str) or not auth["member_id"]:
        raise ApiError(
            "auth[member_id]: required", code="malformed_body", fields={"auth[member_id]": ["required"]}
        )
    return auth


def _check_source() -> None:
    """The second fence after the application token: calls come from Bitrix24's published servers."""
    settings = runtime.current().settings
    if settings.b24_event_source_check == "off":
        return
    verdict = source_verdict(request.remote_addr, settings.b24_event_source_check, cached_source_list())
    if verdict.stranger:
        action = "accepted" if verdict.allowed else "refused"
        log.warning(
            "bitrix24 call %s from %s to %s: %s", action, request.remote_addr, request.path, verdict.reason
        )
    if verdict.allowed:
        return
    raise Forbidden(
        f"remote_addr: {verdict.reason}",
        code="source_not_allowed",
        fields={"remote_addr": [verdict.reason]},
    )


def _portal(session: Session, member_id: str) -> Portal:
    portal = session.scalar(select(Portal).where(Portal.kind == "bitrix24", Portal.external_id == member_id))
    if portal is None:
        raise NotFound(
            f"no Bitrix24 portal {member_id!r} installed", fields={"auth[member_id]": ["unknown portal"]}
        )
    return portal


def _verified(session: Session, form: dict[str, Any]) -> Portal:
    auth = _auth(form)
    portal = _portal(session, auth["member_id"])
    if portal.status == "uninstalled":
        raise ApiError("the app is uninstalled on this portal", code="portal_uninstalled", status=410)
    candidate = auth.get("application_token") if isinstance(auth.get("application_token"), str) else None
    if b24_settings(portal).get("app_token_sha256"):
        if not application_token_ok(portal, candidate):
            raise Unauthorized(
                "auth[application_token] does not match",
                fields={"auth[application_token]": ["does not match"]},
            )
        return portal
    # No application token stored yet: only a call whose own token passes app.info may introduce one.
    if not candidate:
        raise Unauthorized(
            "auth[application_token]: required", fields={"auth[application_token]": ["required"]}
        )
    try:
        verify_frame(
            runtime.current(),
            auth_id=str(auth.get("access_token") or ""),
            server_endpoint=auth.get("server_endpoint"),
            member_id=portal.external_id,
            domain=str(auth.get("domain") or ""),
        )
    except InstallRefused as exc:
        field = "auth[access_token]" if exc.field == "AUTH_ID" else f"auth[{exc.field.lower()}]"
        raise ApiError(
            str(exc), code="verification_failed", status=401, fields={field: [exc.reason]}
        ) from None
    except B24NotConfigured as exc:
        raise not_configured(exc) from None
    settings = dict(portal.settings or {})
    settings["bitrix24"] = {
        **(settings.get("bitrix24") or {}),
        "app_token_sha256": app_token_digest(candidate),
    }
    portal.settings = settings
    return portal


def _malformed(exc: FormError) -> ApiError:
    return ApiError(str(exc), code="malformed_body", fields={exc.field: [exc.reason]})


def _store(session: Session, portal: Portal, *, source: str, key: str, event_type: str) -> Any:
    body = redact(request.get_data(cache=True).decode("utf-8"))
    event, created = receive_event(
        session,
        portal_id=portal.id,
        source=source,
        dedupe_key=key[:255],
        raw_body=body,
        content_type=request.mimetype or None,
        event_type=event_type[:128],
    )
    return event, created


@bitrix24_hooks.post("/events")
@api_doc(
    summary="Bitrix24 events (form body; auth[application_token]): stored and acknowledged",
    tags=["bitrix24"],
    errors=(400, 404, 410),
)
def events() -> Any:
    _check_source()
    form = frame_form()
    session = db_session()
    try:
        event_name = check_event(form)
        key = dedupe_key(form)
    except FormError as exc:
        raise _malformed(exc) from None
    portal = _verified(session, form)
    event, created = _store(session, portal, source="bitrix24", key=key, event_type=event_name)
    if created and event_name == "ONOFFLINEEVENT":
        portal_id = portal.id
        after_commit(
            session,
            lambda: (
                runtime.current()
                .queue("crm")
                .enqueue("widget_server.jobs.bitrix24.drain_offline_events", portal_id, result_ttl=300)
            ),
        )
    session.commit()
    return jsonify(status="accepted" if created else "duplicate", inbox_id=event.id)


@bitrix24_hooks.post("/robots/<name>")
@api_doc(
    summary="Bitrix24 robot call (form body): stored by event_token, answered later by bizproc.event.send",
    tags=["bitrix24"],
    errors=(400, 404, 410),
)
def robot(name: str) -> Any:
    _check_source()
    if name not in ROBOTS:
        raise NotFound(f"no robot {name!r}")
    form = frame_form()
    session = db_session()
    try:
        call = parse_robot("", request.get_data(cache=True).decode("utf-8"))
    except FormError as exc:
        raise _malformed(exc) from None
    if call.params["code"] != ROBOTS[name].code:
        raise ApiError(
            "code: not this robot", code="malformed_body", fields={"code": [f"{ROBOTS[name].code} expected"]}
        )
    portal = _verified(session, form)
    event, created = _store(
        session,
        portal,
        source="bitrix24_robot",
        key=f"robot:{call.params['event_token']}",
        event_type=f"robot.{name}",
    )
    session.commit()
    return jsonify(status="accepted" if created else "duplicate", inbox_id=event.id)


@bitrix24_hooks.post("/uninstall")
@api_doc(
    summary="Bitrix24 ONAPPUNINSTALL: tokens erased, pending CRM work cancelled, data kept",
    tags=["bitrix24"],
    errors=(400, 404),
)
def app_uninstall() -> Any:
    _check_source()
    form = frame_form()
    session = db_session()
    auth = _auth(form)
    portal = _portal(session, auth["member_id"])
    if portal.status == "uninstalled":
        return jsonify(status="uninstalled")
    if str(form.get("event", "")).upper() != "ONAPPUNINSTALL":
        raise ApiError(
            "event: ONAPPUNINSTALL expected",
            code="malformed_body",
            fields={"event": ["ONAPPUNINSTALL expected"]},
        )
    if not application_token_ok(portal, auth.get("application_token")):
        raise Unauthorized(
            "auth[application_token] does not match", fields={"auth[application_token]": ["does not match"]}
        )
    data = form.get("data") if isinstance(form.get("data"), dict) else {}
    portal_id = portal.id
    session.rollback()
    uninstall(runtime.current(), portal_id, clean=str(data.get("CLEAN", "")) in ("1", "Y"))
    return jsonify(status="uninstalled")


@bitrix24_hooks.post("/placement/deal-tab")
@api_doc(
    summary="Bitrix24 deal-card tab (frame POST verified by app.info): HTML with a panel session token",
    tags=["bitrix24"],
    errors=(400, 404, 410),
)
def deal_tab() -> Any:
    form = frame_form()
    rt = runtime.current()
    member_id = str(form.get("member_id") or "")
    domain = request.args.get("DOMAIN", "")
    try:
        info = verify_frame(
            rt,
            auth_id=str(form.get("AUTH_ID") or ""),
            server_endpoint=form.get("SERVER_ENDPOINT"),
            member_id=member_id,
            domain=domain,
        )
    except InstallRefused as exc:
        raise refused(exc) from None
    except B24NotConfigured as exc:
        raise not_configured(exc) from None
    try:
        options = json.loads(str(form.get("PLACEMENT_OPTIONS") or ""))
    except ValueError:
        options = None
    deal_id = str(options.get("ID", "")) if isinstance(options, dict) else ""
    if not _DEAL_ID.match(deal_id):
        raise ApiError(
            "PLACEMENT_OPTIONS: a JSON object with the deal ID is required",
            code="malformed_body",
            fields={"PLACEMENT_OPTIONS": ["JSON with ID expected"]},
        )
    session = db_session()
    portal = _portal(session, member_id)
    if portal.status == "uninstalled":
        raise ApiError("the app is uninstalled on this portal", code="portal_uninstalled", status=410)
    sent = form.get("APPLICATION_TOKEN")
    if sent and b24_settings(portal).get("app_token_sha256") and not application_token_ok(portal, str(sent)):
        raise Unauthorized(
            "APPLICATION_TOKEN does not match", fields={"APPLICATION_TOKEN": ["does not match"]}
        )
    user_id = str(info.get("user_id") or "")
    panel = PanelSession(portal.id, user_id, deal_id, user_roles(session, portal.id, user_id))
    verified_domain = portal.domain or domain
    session.rollback()
    token = issue_panel_token(rt, panel)
    locale = "en" if request.args.get("LANG", "ru").lower().startswith("en") else "ru"
    html = render_template(
        "bitrix24_deal_tab.html",
        base_url=rt.settings.public_base_url.rstrip("/"),
        deal_id=deal_id,
        token=token,
        locale=locale,
    )
    response = make_response(html)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Content-Security-Policy"] = f"frame-ancestors https://{verified_domain}"
    response.headers["Cache-Control"] = "no-store"
    response.headers.pop("X-Frame-Options", None)
    return response
