"""Inbound platform calls: verify, store in the inbox with a dedupe key, acknowledge at once.

Processing happens in a job, so the platform's short timeout (amoCRM allows about 2 s) is never at risk
and a replayed delivery is recognised by its key instead of acting twice.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from .. import runtime
from ..errors import ApiError, NotFound, Unauthorized
from ..inbox import receive_event
from ..models import Portal
from ..sandbox.hooks import hook_secret, verify_signature
from .lifecycle import db_session

__all__ = ["hooks"]

hooks = Blueprint("hooks", __name__, url_prefix="/hooks")


@hooks.post("/sandbox/<slug>")
def sandbox_hook(slug: str) -> Any:
    session = db_session()
    portal = session.scalar(select(Portal).where(Portal.slug == slug, Portal.kind == "sandbox"))
    if portal is None or portal.status == "uninstalled":
        raise NotFound(f"no sandbox portal {slug!r}")
    body = request.get_data(cache=True)
    secret = hook_secret(runtime.current().settings.secret_key, portal.external_id)
    if not verify_signature(secret, body, request.headers.get("X-Sandbox-Signature")):
        raise Unauthorized("signature does not match", fields={"X-Sandbox-Signature": ["invalid or missing"]})
    try:
        payload = json.loads(body)
        event_id = payload["event_id"] if isinstance(payload, dict) else None
    except (ValueError, KeyError):
        event_id = None
    if not isinstance(event_id, str) or not event_id:
        raise ApiError(
            "event_id: required non-empty string",
            code="malformed_hook",
            fields={"event_id": ["required non-empty string"]},
        )
    event, created = receive_event(
        session,
        portal_id=portal.id,
        source="sandbox",
        dedupe_key=f"sandbox:{event_id}",
        raw_body=body.decode("utf-8", errors="replace"),
        content_type=request.mimetype,
        event_type=str(payload.get("event")),
    )
    session.commit()
    return jsonify(status="accepted" if created else "duplicate", inbox_id=event.id)
