"""Bitrix24 install: the install page (a frame POST) and the `ONAPPINSTALL` callback, one URL for both.

Either may come first (research/bitrix24.md §1.2-1.3); both are verified by `app.info` on the OAuth
server before anything is stored. The page syncs our registrations with the admin's token and calls
`BX24.installFinish()` only when every call succeeded; otherwise it names the refused call and error.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, jsonify, render_template, request
from sqlalchemy import select

from connectors.bitrix24.events import FormError, app_token_matches, parse_form
from connectors.bitrix24.install import BindFailed
from connectors.bitrix24.oauth import token_from_payload
from connectors.errors import RetryLater

from .. import runtime
from ..bitrix24_client import B24NotConfigured, b24_settings
from ..bitrix24_install import InstallRefused, frame_token, rebind, record_install, verify_frame
from ..errors import ApiError
from ..models import Portal
from .lifecycle import db_session
from .openapi import api_doc

__all__ = ["bitrix24_install", "frame_form", "refused"]

log = logging.getLogger(__name__)

bitrix24_install = Blueprint("bitrix24_install", __name__)


def frame_form() -> dict[str, Any]:
    raw = request.get_data(cache=True)
    try:
        return parse_form(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError("body: not UTF-8", code="malformed_body", fields={"body": ["not UTF-8"]}) from None
    except FormError as exc:
        raise ApiError(str(exc), code="malformed_body", fields={exc.field: [exc.reason]}) from None


def refused(exc: InstallRefused) -> ApiError:
    code = "invalid_request" if exc.status == 400 else "verification_failed"
    return ApiError(str(exc), code=code, status=exc.status, fields={exc.field: [exc.reason]})


def not_configured(exc: B24NotConfigured) -> ApiError:
    return ApiError(str(exc), code="bitrix24_not_configured", status=503)


def public_base_url_problem(base_url: str) -> str | None:
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme != "https" or host in ("localhost", "127.0.0.1", "::1") or "." not in host:
        return f"PUBLIC_BASE_URL must be a public HTTPS address for Bitrix24 handlers (is {base_url!r})"
    return None


def _locale() -> str:
    return "en" if request.args.get("LANG", "ru").lower().startswith("en") else "ru"


@bitrix24_install.post("/bitrix24/install")
@api_doc(
    summary="Bitrix24 install page (frame POST) or ONAPPINSTALL callback, verified by app.info",
    tags=["bitrix24"],
    errors=(400, 503),
)
def install() -> Any:
    form = frame_form()
    try:
        if str(form.get("event", "")).upper() == "ONAPPINSTALL":
            return _callback(form)
        return _page(form)
    except InstallRefused as exc:
        raise refused(exc) from None
    except B24NotConfigured as exc:
        raise not_configured(exc) from None


def _callback(form: dict[str, Any]) -> Any:
    auth = form.get("auth") if isinstance(form.get("auth"), dict) else {}
    member_id, domain = str(auth.get("member_id") or ""), str(auth.get("domain") or "")
    rt = runtime.current()
    verify_frame(
        rt,
        auth_id=str(auth.get("access_token") or ""),
        server_endpoint=auth.get("server_endpoint"),
        member_id=member_id,
        domain=domain,
    )
    if not auth.get("application_token"):
        raise InstallRefused("auth[application_token]", "required", 400)
    token = token_from_payload(auth, datetime.now(UTC))
    data = form.get("data") if isinstance(form.get("data"), dict) else {}
    installed = record_install(
        rt,
        member_id=member_id,
        domain=domain,
        token=token,
        application_token=str(auth["application_token"]),
        version=str(data.get("VERSION") or "") or None,
    )
    # The callback has no page to report to and the platform's queue should not wait: sync in a job.
    rt.queue("default").enqueue(
        "widget_server.jobs.bitrix24.rebind_portal", installed.portal_id, result_ttl=600
    )
    return jsonify(status="installed", portal=installed.slug, created=installed.created)


def _page(form: dict[str, Any]) -> Any:
    rt = runtime.current()
    member_id = str(form.get("member_id") or "")
    domain = request.args.get("DOMAIN", "")
    server_endpoint = form.get("SERVER_ENDPOINT")
    verify_frame(
        rt,
        auth_id=str(form.get("AUTH_ID") or ""),
        server_endpoint=server_endpoint,
        member_id=member_id,
        domain=domain,
    )
    session = db_session()
    existing = session.scalar(
        select(Portal).where(Portal.kind == "bitrix24", Portal.external_id == member_id)
    )
    sent_app_token = str(form.get("APPLICATION_TOKEN") or "") or None
    stored = b24_settings(existing).get("app_token_sha256") if existing is not None else None
    if sent_app_token and stored and not app_token_matches(stored, sent_app_token):
        raise InstallRefused("APPLICATION_TOKEN", "does not match the installed application")
    session.rollback()
    installed = record_install(
        rt,
        member_id=member_id,
        domain=domain,
        token=frame_token(form, server_endpoint, member_id, domain),
        application_token=None if stored else sent_app_token,
    )
    locale = _locale()
    problem = public_base_url_problem(rt.settings.public_base_url)
    if problem:
        return render_template(
            "bitrix24_install.html", ok=False, failed_call="PUBLIC_BASE_URL", error=problem, locale=locale
        )
    try:
        rebind(rt, installed.portal_id)
    except BindFailed as exc:
        log.warning(
            "Bitrix24 portal %s: install bind failed at %s: %s", installed.portal_id, exc.method, exc.error
        )
        return render_template(
            "bitrix24_install.html", ok=False, failed_call=exc.method, error=exc.error, locale=locale
        )
    except RetryLater as exc:
        return render_template(
            "bitrix24_install.html", ok=False, failed_call="", error=str(exc), locale=locale
        )
    return render_template("bitrix24_install.html", ok=True, locale=locale)
