"""amoCRM hooks: account webhooks (research §4) and the Digital Pipeline widget hook (§3).

Same path as the sandbox hook: verify, store in the inbox under a dedupe key, answer 200 at once, no
outbound call (amo waits 2 s, §4.3). amo's retries (5, 15, 15 min, 1 h) and DP resends meet the stored
key and enqueue nothing. Unsupported and ignored events are stored and acknowledged too: refusing them
would count against the hook until amo disables it (more than 100 invalid answers in 2 h), and the job
gives them their outcome and log line.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.amocrm.forms import parse_form
from connectors.amocrm.hooks import (
    DpAction,
    ForeignAccount,
    FormError,
    check_account,
    dedupe_key,
    dp_account_id,
    dp_dedupe_key,
    dp_secret,
    event_names,
    parse_account_hook,
    parse_dp_body,
    parse_dp_hook,
    redact_dp_secret,
)
from connectors.errors import UnsupportedEvent

from ..amocrm_hooks import dp_secret_matches, webhook_secret_matches
from ..errors import ApiError, Forbidden, NotFound
from ..inbox import receive_event
from ..models import Portal
from .lifecycle import db_session

__all__ = ["amocrm_hooks"]

amocrm_hooks = Blueprint("amocrm_hooks", __name__, url_prefix="/hooks/amocrm")

_EVENT_TYPE_MAX = 128


def _gone(portal: Portal) -> None:
    # After uninstall amo may still hold our hook URL; 410 says "stop", and no event is kept for it.
    if portal.status == "uninstalled":
        raise ApiError(f"portal {portal.slug!r} is uninstalled", code="portal_uninstalled", status=410)


def _by_slug(session: Session, slug: str) -> Portal:
    portal = session.scalar(select(Portal).where(Portal.slug == slug, Portal.kind == "amocrm"))
    if portal is None:
        raise NotFound(f"no amoCRM portal {slug!r}")
    return portal


def _malformed(exc: FormError) -> ApiError:
    return ApiError(str(exc), code="malformed_hook", fields={exc.key: [exc.reason]})


def _foreign(exc: ForeignAccount, key: str) -> ApiError:
    return Forbidden(str(exc), code="foreign_account", fields={key: ["not this portal's amoCRM account"]})


def _body() -> str:
    raw = request.get_data(cache=True)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("body: not UTF-8", code="malformed_hook", fields={"body": ["not UTF-8"]}) from None


def _store(session: Session, portal: Portal, *, source: str, key: str, body: str, event_type: str) -> Any:
    event, created = receive_event(
        session,
        portal_id=portal.id,
        source=source,
        dedupe_key=key,
        raw_body=body,
        content_type=request.mimetype or None,
        event_type=event_type[:_EVENT_TYPE_MAX],
    )
    session.commit()
    return jsonify(status="accepted" if created else "duplicate", inbox_id=event.id)


@amocrm_hooks.post("/<slug>/<secret>")
def account_hook(slug: str, secret: str) -> Any:
    """An account webhook (form-urlencoded, §4.2) at the URL registered for this portal at install."""
    session = db_session()
    portal = _by_slug(session, slug)
    _gone(portal)
    if not webhook_secret_matches(portal, secret):
        raise Forbidden("the URL secret does not match", code="invalid_secret")
    body = _body()
    try:
        # The parser runs here in full too, so a body the job could not read is refused now, while amo
        # still retries it, instead of failing later in silence.
        form = parse_form(body)
        check_account(form, portal.external_id)
        try:
            parse_account_hook(portal.external_id, body)
        except UnsupportedEvent:
            pass
        key, names = dedupe_key(form), event_names(form)
    except ForeignAccount as exc:
        raise _foreign(exc, "account[id]") from None
    except FormError as exc:
        raise _malformed(exc) from None
    return _store(session, portal, source="amocrm", key=key, body=body, event_type=",".join(names))


@amocrm_hooks.post("/dp")
def dp_hook() -> Any:
    """The DP widget hook at the manifest's one `dp.webhook_url`: the portal comes from `account_id` and
    is proven by the DP secret echoed in the action's settings."""
    return _dp(None)


@amocrm_hooks.post("/dp/<slug>")
def dp_hook_for_portal(slug: str) -> Any:
    """The same hook at a per-portal URL; the body's account must then be this portal's."""
    return _dp(slug)


def _dp(slug: str | None) -> Any:
    session = db_session()
    body = _body()
    try:
        tree = parse_dp_body(body)
        account_id = dp_account_id(tree)
    except FormError as exc:
        raise _malformed(exc) from None
    if slug is not None:
        portal = _by_slug(session, slug)
        if portal.external_id != account_id:
            raise _foreign(
                ForeignAccount(f"account_id: {account_id} is not this portal's account"), "account_id"
            )
    else:
        found = session.scalar(
            select(Portal).where(Portal.kind == "amocrm", Portal.external_id == account_id)
        )
        if found is None:
            raise NotFound(f"no amoCRM portal for account {account_id}")
        portal = found
    _gone(portal)
    if not dp_secret_matches(portal, dp_secret(tree)):
        raise Forbidden("the DP secret does not match", code="invalid_secret")
    try:
        parsed = parse_dp_hook(portal.external_id, body)
        event_type = f"dp.{parsed.trigger}" if isinstance(parsed, DpAction) else "dp.went_from_trigger"
    except UnsupportedEvent as exc:
        event_type = exc.event_type
    except FormError as exc:
        raise _malformed(exc) from None
    return _store(
        session,
        portal,
        source="amocrm_dp",
        key=dp_dedupe_key(tree),
        body=redact_dp_secret(body),
        event_type=event_type,
    )
