"""Inbound Bitrix24 calls: events, robots, uninstall (research/bitrix24.md §1.3, §3, §4; Facts 9-12).

Bodies are bracket forms. The portal is `auth[member_id]`; the proof is `auth[application_token]`,
compared in constant time with the digest stored at install. Tokens in a body are the acting user's,
so they are stripped before the body is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..errors import UnsupportedEvent
from ..types import CrmEvent, DealCreated, DealDeleted, DealStageChanged, DealUpdated, RobotCall, StageRef
from .forms import FormError, nest

__all__ = [
    "DEAL_EVENT_NAMES",
    "FormError",
    "app_token_digest",
    "app_token_matches",
    "dedupe_key",
    "document_deal_id",
    "parse_event",
    "parse_form",
    "parse_robot",
    "redact",
]

DEAL_EVENT_NAMES = frozenset(
    {"ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE", "ONCRMDEALMOVETOCATEGORY"}
)
_SECRET_KEYS = ("auth[access_token]", "auth[refresh_token]", "AUTH_ID", "REFRESH_ID")
_DOC = re.compile(r"^DEAL_([1-9]\d{0,18})$")
_ID = re.compile(r"^[1-9]\d{0,18}$")
MAX_BODY = 256 * 1024


def parse_form(body: str) -> dict[str, Any]:
    if len(body) > MAX_BODY:
        raise FormError("body", "too large")
    try:
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body))
    except ValueError:
        raise FormError("body", "not application/x-www-form-urlencoded") from None
    return nest(pairs)


def redact(body: str) -> str:
    pairs = parse_qsl(body, keep_blank_values=True)
    return urlencode([(k, "***" if k in _SECRET_KEYS else v) for k, v in pairs])


def _str(tree: Mapping[str, Any], *path: str) -> str:
    node: Any = tree
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, str) else ""


def required(tree: Mapping[str, Any], *path: str) -> str:
    value = _str(tree, *path)
    if not value:
        name = path[0] + "".join(f"[{p}]" for p in path[1:])
        raise FormError(name, "required")
    return value


def app_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def app_token_matches(stored_digest: str | None, candidate: str | None) -> bool:
    if not stored_digest or not candidate:
        return False
    return hmac.compare_digest(app_token_digest(candidate), stored_digest)


def _ts(tree: Mapping[str, Any]) -> datetime | None:
    raw = _str(tree, "ts")
    return datetime.fromtimestamp(int(raw), UTC) if raw.isdigit() else None


def dedupe_key(tree: Mapping[str, Any]) -> str:
    """Events: name, deal id, ts (§4 "dedupe: event, data[FIELDS][ID], ts"); offline: MESSAGE_ID."""
    event = required(tree, "event").upper()
    if _str(tree, "message_id"):
        return f"offline:{_str(tree, 'message_id')}"
    return f"{event}:{_str(tree, 'data', 'FIELDS', 'ID')}:{_str(tree, 'ts')}"


def _deal_id(tree: Mapping[str, Any]) -> str:
    deal_id = required(tree, "data", "FIELDS", "ID")
    if not _ID.match(deal_id):
        raise FormError("data[FIELDS][ID]", "not a deal id")
    return deal_id


def check_event(tree: Mapping[str, Any]) -> str:
    """The event name, after checking the fields its parser will need (so a bad body is refused now)."""
    event = required(tree, "event").upper()
    if event in DEAL_EVENT_NAMES:
        _deal_id(tree)
    return event


def parse_event(member_id: str, raw: str) -> CrmEvent | None:
    tree = parse_form(raw)
    event = check_event(tree)
    at = _ts(tree)
    if event == "ONCRMDEALADD":
        return DealCreated(member_id, at, deal_id=_deal_id(tree))
    if event == "ONCRMDEALUPDATE":
        return DealUpdated(member_id, at, deal_id=_deal_id(tree))
    if event == "ONCRMDEALDELETE":
        return DealDeleted(member_id, at, deal_id=_deal_id(tree))
    if event == "ONCRMDEALMOVETOCATEGORY":
        fields = tree["data"]["FIELDS"]
        category, stage = _str(fields, "CATEGORY_ID"), _str(fields, "STAGE_ID")
        if not (category and stage):
            return DealUpdated(member_id, at, deal_id=_deal_id(tree))
        return DealStageChanged(member_id, at, deal_id=_deal_id(tree), stage=StageRef(category, stage))
    if event in ("ONOFFLINEEVENT", "ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPTEST"):
        return None
    raise UnsupportedEvent(event)


def document_deal_id(tree: Mapping[str, Any]) -> str:
    doc = required(tree, "document_id", "2")
    match = _DOC.match(doc)
    if not match:
        raise FormError("document_id[2]", f"not a deal document ({doc!r}; DEAL_<id> expected)")
    return match.group(1)


def parse_robot(member_id: str, raw: str) -> RobotCall:
    tree = parse_form(raw)
    code = required(tree, "code")
    params: dict[str, str] = {"event_token": required(tree, "event_token"), "code": code}
    props = tree.get("properties") or {}
    if not isinstance(props, Mapping):
        raise FormError("properties", "must be a group")
    for key, value in props.items():
        params[f"properties.{key}"] = (
            ",".join(value.values())
            if isinstance(value, Mapping)
            else (",".join(value) if isinstance(value, list) else str(value))
        )
    return RobotCall(
        member_id,
        _ts(tree),
        deal_id=document_deal_id(tree),
        action=code.removeprefix("clinicbridge_"),
        params=params,
        user_id=_str(tree, "auth", "user_id") or None,
    )
