"""Webhooks of the sandbox CRM: JSON bodies signed with HMAC-SHA256, shaped like the neutral events.

They let the demo and the tests exercise the inbox path (verify → store → acknowledge → process) the way
amoCRM and Bitrix24 hooks will use it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from connectors.errors import AnomalousPayload, UnsupportedEvent
from connectors.types import CrmEvent, DealCreated, DealStageChanged, StageRef

__all__ = ["IGNORED_EVENTS", "SUPPORTED_EVENTS", "hook_secret", "parse_hook", "sign", "verify_signature"]


def hook_secret(app_secret: str, portal_external_id: str) -> bytes:
    """Per-portal signing secret derived from SECRET_KEY, so nothing extra is stored."""
    return hmac.new(
        app_secret.encode(), f"sandbox-hook:{portal_external_id}".encode(), hashlib.sha256
    ).digest()


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(sign(secret, body), header or "")


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        raise AnomalousPayload(f"{key}: expected a non-empty string or integer, got {value!r}")
    return str(value)


def _when(payload: Mapping[str, Any]) -> datetime | None:
    raw = payload.get("occurred_at")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise AnomalousPayload(f"occurred_at: not an ISO 8601 datetime, got {raw!r}") from None
    if moment.tzinfo is None:
        raise AnomalousPayload("occurred_at: needs a UTC offset")
    return moment


def _stage_changed(portal: str, payload: Mapping[str, Any]) -> DealStageChanged:
    return DealStageChanged(
        portal_external_id=portal,
        occurred_at=_when(payload),
        deal_id=_text(payload, "deal_id"),
        stage=StageRef(_text(payload, "pipeline_id"), _text(payload, "stage_id")),
    )


def _created(portal: str, payload: Mapping[str, Any]) -> DealCreated:
    return DealCreated(
        portal_external_id=portal, occurred_at=_when(payload), deal_id=_text(payload, "deal_id")
    )


EVENT_PARSERS: dict[str, Callable[[str, Mapping[str, Any]], CrmEvent]] = {
    "deal.stage_changed": _stage_changed,
    "deal.created": _created,
}
SUPPORTED_EVENTS = tuple(EVENT_PARSERS)
IGNORED_EVENTS = frozenset({"deal.viewed"})


def parse_hook(portal_external_id: str, raw_body: str) -> CrmEvent | None:
    """An event, None for an event we ignore on purpose; UnsupportedEvent / AnomalousPayload otherwise."""
    try:
        payload = json.loads(raw_body)
    except json.JSONDecodeError:
        raise AnomalousPayload("body is not JSON") from None
    if not isinstance(payload, dict):
        raise AnomalousPayload("body must be a JSON object")
    event = _text(payload, "event")
    if event in IGNORED_EVENTS:
        return None
    parser = EVENT_PARSERS.get(event)
    if parser is None:
        raise UnsupportedEvent(event)
    return parser(portal_external_id, payload)
