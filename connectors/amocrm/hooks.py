"""amoCRM inbound hooks → neutral `CrmEvent`s: account webhooks (research §4) and DP widget hooks (§3).

Every event gets exactly one outcome (STYLE-ANCHORS §1): a `CrmEvent`, ``None`` for events we ignore on
purpose (`IGNORED_EVENTS`, a DP ``went_from_trigger``), or `UnsupportedEvent`, which the endpoint still
stores and acknowledges with 200 so that amo does not count it as a failure and disable the hook (§4.3).
A body amo would never send raises `FormError` (naming the key; the endpoint answers 400) or
`ForeignAccount` (another account's hook at this portal's URL; 403).

Neither kind of hook is signed (§4.2, open question 3), so nothing here is trusted beyond routing: the job
re-fetches the entity through the API before acting.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from connectors.errors import AnomalousPayload, UnsupportedEvent
from connectors.types import (
    ContactChanged,
    CrmEvent,
    DealCreated,
    DealDeleted,
    DealRestored,
    DealStageChanged,
    DealUpdated,
    DpAction,
    EventBatch,
    FieldValue,
    StageRef,
)

from .forms import FormError, encode_form, parse_form

__all__ = [
    "DP_EVENTS",
    "DP_SECRET_SETTING",
    "EVENT_PARSERS",
    "IGNORED_EVENTS",
    "SUPPORTED_EVENTS",
    "ContactChanged",
    "DealDeleted",
    "DealRestored",
    "DealUpdated",
    "DpAction",
    "EventBatch",
    "ForeignAccount",
    "FormError",
    "check_account",
    "dedupe_key",
    "dp_account_id",
    "dp_dedupe_key",
    "dp_secret",
    "event_names",
    "is_own_echo",
    "parse_account_hook",
    "parse_dp_body",
    "parse_dp_hook",
    "redact_dp_secret",
]

log = logging.getLogger(__name__)


class ForeignAccount(AnomalousPayload):
    """The body names another amo account than the portal whose URL (or DP secret) it came in on."""


# --- schemas ----------------------------------------------------------------------------------------------

_DIGITS = validate.Regexp(r"^[0-9]+$", error="expected an integer as a string")
# amo sends an empty string for an unset optional id or date (e.g. no responsible); both readings are legal.
_DIGITS_OR_EMPTY = validate.Regexp(r"^[0-9]*$", error="expected an integer as a string or empty")


def _id() -> fields.String:
    return fields.String(required=True, validate=_DIGITS)


def _optional_id() -> fields.String:
    return fields.String(validate=_DIGITS_OR_EMPTY)


def _value_shape(value: Any) -> None:
    # Date fields send values[0]=<ts> with no [value] (§4.2); the rest values[0][value]=… (+ [enum]).
    if isinstance(value, str):
        return
    if isinstance(value, dict) and isinstance(value.get("value", ""), str):
        return
    raise ValidationError("expected a string or {value, enum}")


class _Loose(Schema):
    class Meta:
        # amo adds fields over time (direction_of_movement arrived in 2024, §3); unknown keys are kept.
        unknown = INCLUDE


class CustomFieldSchema(_Loose):
    id = _id()
    code = fields.String()
    values = fields.List(fields.Raw(validate=_value_shape), load_default=list)


class _EntitySchema(_Loose):
    id = _id()
    name = fields.String()
    responsible_user_id = _optional_id()
    created_user_id = _optional_id()
    modified_user_id = _optional_id()
    date_create = _optional_id()
    last_modified = _optional_id()
    created_at = _optional_id()
    updated_at = _optional_id()
    account_id = _optional_id()
    custom_fields = fields.List(fields.Nested(CustomFieldSchema), load_default=list)


class LeadSchema(_EntitySchema):
    status_id = _optional_id()
    old_status_id = _optional_id()
    pipeline_id = _optional_id()
    old_pipeline_id = _optional_id()
    old_responsible_user_id = _optional_id()
    price = fields.String()


class LeadStatusSchema(LeadSchema):
    status_id = fields.String(required=True, validate=_DIGITS)
    pipeline_id = fields.String(required=True, validate=_DIGITS)


class ContactSchema(_EntitySchema):
    type = fields.String(validate=validate.OneOf(["contact", "company"]))


class AccountSchema(_Loose):
    id = _id()
    subdomain = fields.String(required=True, validate=validate.Length(min=1))


def _load(schema: Schema, data: Any, key: str) -> dict[str, Any]:
    try:
        return schema.load(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        path, reason = _first_error(exc.messages)
        for segment in path:
            key = f"{key}[{segment}]" if key else segment
        raise FormError(key or "body", reason) from None


def _first_error(messages: Any) -> tuple[list[str], str]:
    # marshmallow nests errors by field name and list index; the first leaf is enough to name the key.
    path: list[str] = []
    while isinstance(messages, dict) and messages:
        name = sorted(messages, key=str)[0]
        if name != "_schema":
            # "_schema" is marshmallow's "this whole value", e.g. a string where fields were expected.
            path.append(str(name))
        messages = messages[name]
    reason = messages[0] if isinstance(messages, list) and messages else str(messages)
    return path, str(reason)


# --- account webhooks (§4) --------------------------------------------------------------------------------


def _when(item: Mapping[str, Any]) -> datetime | None:
    for name in ("updated_at", "last_modified"):
        if item.get(name):
            return datetime.fromtimestamp(int(item[name]), tz=UTC)
    return None


def _or_none(value: str | None) -> str | None:
    return value or None


def _field_values(custom_fields: list[dict[str, Any]]) -> dict[str, FieldValue]:
    values: dict[str, FieldValue] = {}
    for custom in custom_fields:
        texts = tuple(v if isinstance(v, str) else v.get("value", "") for v in custom["values"])
        values[custom["id"]] = texts[0] if len(texts) == 1 else texts
    return values


def _coded(custom_fields: list[dict[str, Any]], code: str) -> tuple[str, ...]:
    return tuple(
        v if isinstance(v, str) else v.get("value", "")
        for custom in custom_fields
        if custom.get("code") == code
        for v in custom["values"]
    )


def _stage(item: Mapping[str, Any]) -> StageRef | None:
    if item.get("pipeline_id") and item.get("status_id"):
        return StageRef(item["pipeline_id"], item["status_id"])
    return None


def _lead_status(portal: str, key: str, raw: Mapping[str, Any]) -> CrmEvent:
    item = _load(LeadStatusSchema(), raw, key)
    previous = None
    if item.get("old_status_id"):
        # §4.2 lists no old_pipeline_id; without it the move is taken as within the pipeline. Status ids are
        # unique per account except 142/143, and the job re-reads the deal, so the guess cannot mislead it.
        previous = StageRef(item.get("old_pipeline_id") or item["pipeline_id"], item["old_status_id"])
    return DealStageChanged(
        portal_external_id=portal,
        occurred_at=_when(item),
        deal_id=item["id"],
        stage=StageRef(item["pipeline_id"], item["status_id"]),
        previous=previous,
    )


def _lead_add(portal: str, key: str, raw: Mapping[str, Any]) -> CrmEvent:
    item = _load(LeadSchema(), raw, key)
    return DealCreated(portal_external_id=portal, occurred_at=_when(item), deal_id=item["id"])


def _lead_update(portal: str, key: str, raw: Mapping[str, Any]) -> CrmEvent:
    item = _load(LeadSchema(), raw, key)
    return DealUpdated(
        portal_external_id=portal,
        occurred_at=_when(item),
        deal_id=item["id"],
        stage=_stage(item),
        responsible_user_id=_or_none(item.get("responsible_user_id")),
        fields=_field_values(item["custom_fields"]),
    )


def _lead_delete(portal: str, key: str, raw: Mapping[str, Any]) -> CrmEvent:
    item = _load(LeadSchema(), raw, key)
    return DealDeleted(portal_external_id=portal, occurred_at=_when(item), deal_id=item["id"])


def _lead_restore(portal: str, key: str, raw: Mapping[str, Any]) -> CrmEvent:
    item = _load(LeadSchema(), raw, key)
    return DealRestored(portal_external_id=portal, occurred_at=_when(item), deal_id=item["id"])


def _contact(change: str) -> Callable[[str, str, Mapping[str, Any]], CrmEvent]:
    def parse(portal: str, key: str, raw: Mapping[str, Any]) -> CrmEvent:
        item = _load(ContactSchema(), raw, key)
        return ContactChanged(
            portal_external_id=portal,
            occurred_at=_when(item),
            contact_id=item["id"],
            change=change,
            phones=_coded(item["custom_fields"], "PHONE"),
            emails=_coded(item["custom_fields"], "EMAIL"),
        )

    return parse


EVENT_PARSERS: dict[str, Callable[[str, str, Mapping[str, Any]], CrmEvent]] = {
    "leads.add": _lead_add,
    "leads.update": _lead_update,
    "leads.status": _lead_status,
    "leads.responsible": _lead_update,
    "leads.delete": _lead_delete,
    "leads.restore": _lead_restore,
    "contacts.add": _contact("added"),
    "contacts.update": _contact("updated"),
    "contacts.delete": _contact("deleted"),
}
"""Event name (entity.action, contacts of type company renamed companies.*) → item parser."""

SUPPORTED_EVENTS: tuple[str, ...] = tuple(EVENT_PARSERS)

IGNORED_EVENTS: frozenset[str] = frozenset(
    {
        # Incoming leads become leads.add when accepted; the unsorted record itself is not a deal (§4.2).
        "unsorted.add",
        "unsorted.update",
        "unsorted.delete",
        # Companies share contacts[…] (§4.2) but a company is not a patient.
        "companies.add",
        "companies.update",
        "companies.delete",
        "companies.restore",
        "companies.responsible",
        # Chats and tasks are the CRM's own business; we never subscribe to them, so these are strays.
        "message.add",
        "talk.add",
        "talk.update",
        "task.add",
        "task.update",
        "task.delete",
        "task.responsible",
    }
)


def _items(form: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(event name, key prefix, item) for every entity item in body order; `account` is not an entity."""
    for entity, actions in form.items():
        if entity == "account":
            continue
        if not isinstance(actions, dict):
            raise FormError(entity, "expected entity[action][index][field]")
        for action, items in actions.items():
            prefix = f"{entity}[{action}]"
            if not isinstance(items, list):
                raise FormError(prefix, "expected a list of items [0], [1], …")
            for index, item in enumerate(items):
                key = f"{prefix}[{index}]"
                if not isinstance(item, dict):
                    raise FormError(key, "expected the item's fields")
                name = f"{entity}.{action}"
                if entity == "contacts" and item.get("type") == "company":
                    name = f"companies.{action}"
                yield name, key, item


def event_names(form: Mapping[str, Any]) -> tuple[str, ...]:
    """The distinct event names in a parsed body, in body order (for the inbox's event_type column)."""
    return tuple(dict.fromkeys(name for name, _, _ in _items(form)))


def check_account(form: Mapping[str, Any], portal_external_id: str) -> None:
    """`account[id]` must be the portal's amo account: our URL secret could have leaked to another one."""
    account = _load(AccountSchema(), form.get("account", {}), "account")
    if account["id"] != portal_external_id:
        raise ForeignAccount(f"account[id]: {account['id']} is not this portal's account")


def parse_account_hook(portal_external_id: str, raw_body: str) -> CrmEvent | None:
    """Parse an account webhook body (form-urlencoded, §4.2) for the portal with this amo account id.

    Returns one event, an `EventBatch` when the body holds several, or None when all of it is ignored.
    Raises UnsupportedEvent when nothing in it is supported or ignored; an unsupported item next to
    supported ones is logged and dropped, since failing the whole delivery would lose the rest.
    """
    form = parse_form(raw_body)
    check_account(form, portal_external_id)
    events: list[CrmEvent] = []
    unsupported: list[str] = []
    seen = False
    for name, key, item in _items(form):
        seen = True
        if name in IGNORED_EVENTS:
            continue
        parser = EVENT_PARSERS.get(name)
        if parser is None:
            unsupported.append(name)
            continue
        events.append(parser(portal_external_id, key, item))
    if not seen:
        raise FormError("body", "no entity[action][index] event in the body")
    if unsupported and not events:
        raise UnsupportedEvent(",".join(dict.fromkeys(unsupported)))
    if unsupported:
        dropped = sorted(set(unsupported))
        log.warning("amocrm hook for %s: dropped unsupported %s", portal_external_id, dropped)
    if not events:
        return None
    if len(events) == 1:
        return events[0]
    times = [e.occurred_at for e in events if e.occurred_at is not None]
    return EventBatch(
        portal_external_id=portal_external_id, occurred_at=max(times) if times else None, events=tuple(events)
    )


def _version(item: Mapping[str, Any]) -> str:
    if item.get("updated_at") or item.get("last_modified"):
        return str(item.get("updated_at") or item.get("last_modified"))
    # A delete carries no timestamp: the item's own content stands in, so a byte-identical retry still
    # matches while a later, different event about the same id does not.
    canonical = json.dumps(item, sort_keys=True, ensure_ascii=False).encode()
    return "h" + hashlib.sha256(canonical).hexdigest()[:16]


def dedupe_key(form: Mapping[str, Any]) -> str:
    """Entity, action, id and `updated_at` of every item; amo's retries (5, 15, 15 min, 1 h) repeat it.

    One item gives a readable key (``amocrm:leads.status:15318175:1700000000``); several are sorted and
    hashed so the key fits the column and does not depend on item order.
    """
    parts = sorted(f"{name}:{item.get('id', '')}:{_version(item)}" for name, _, item in _items(form))
    if len(parts) == 1 and len(parts[0]) <= 200:
        return f"amocrm:{parts[0]}"
    return "amocrm:sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def is_own_echo(updated_at: int | str | None, recent_writes: Collection[int | str]) -> bool:
    """True when the hook's `updated_at` is one our own write to that entity got back (kept 1 h by the
    caller): amo reports our changes like anyone's, and acting on them would loop."""
    if updated_at in (None, ""):
        return False
    return str(updated_at) in {str(w) for w in recent_writes}


# --- Digital Pipeline widget hook (§3) --------------------------------------------------------------------

DP_EVENTS: dict[str, str] = {"1": "lead_added", "14": "lead_status_changed", "15": "lead_appeared_in_status"}
"""DP event type → trigger for the types we act on; 16-22 (mail, call, visit, chat, customers) are not."""

_DP_OTHER = {
    "16": "mail_in",
    "17": "call_in",
    "18": "site_visit",
    "19": "chat",
    "20": "customer_added",
    "21": "customer_period_changed",
    "22": "customer_appeared_in_period",
}

DP_SECRET_SETTING = "clinicbridge_secret"  # noqa: S105 (the setting's name, not a secret)
"""The hidden DP setting that `dpSettings()` fills with the portal's DP secret. DP hooks are unsigned
(open question 3), but amo echoes the action's settings in every hook as
``action.settings.widget.settings``, so the secret comes back with each call and proves the sender."""

_REDACTED = "[redacted]"


def _stringify(node: Any) -> Any:
    # JSON and form bodies become one shape: the form reading has only strings, so JSON numbers join it.
    if isinstance(node, dict):
        return {str(k): _stringify(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_stringify(v) for v in node]
    if node is None:
        return ""
    if isinstance(node, bool):
        return "1" if node else "0"
    return str(node)


def parse_dp_body(raw_body: str) -> dict[str, Any]:
    """A DP hook body in either encoding (open question 3): JSON per the docs, form per third parties."""
    if raw_body.lstrip().startswith("{"):
        try:
            tree = json.loads(raw_body)
        except ValueError as exc:
            raise FormError("body", f"invalid JSON ({exc})") from None
        return _stringify(tree)  # type: ignore[no-any-return]
    return parse_form(raw_body)


def _dig(tree: Mapping[str, Any], *path: str) -> Any:
    node: Any = tree
    for name in path:
        if not isinstance(node, dict):
            return None
        node = node.get(name)
    return node


def dp_account_id(tree: Mapping[str, Any]) -> str:
    account_id = tree.get("account_id")
    if not isinstance(account_id, str) or not account_id.isdigit():
        raise FormError("account_id", "required, an integer")
    return account_id


def dp_secret(tree: Mapping[str, Any]) -> str | None:
    secret = _dig(tree, "action", "settings", "widget", "settings", DP_SECRET_SETTING)
    return secret if isinstance(secret, str) and secret else None


def dp_dedupe_key(tree: Mapping[str, Any]) -> str:
    """Type, lead, status and `event.time`: a replay of the same firing, not a later one (§3, facts 2)."""
    event = tree.get("event") if isinstance(tree.get("event"), dict) else {}
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    parts = (event.get("type"), data.get("id"), data.get("status_id"), event.get("time"))
    return "amocrm_dp:" + ":".join(str(p) if isinstance(p, str) else "" for p in parts)


def redact_dp_secret(raw_body: str) -> str:
    """The body with our DP secret replaced, for storage: the inbox keeps bodies, never credentials."""
    tree = parse_dp_body(raw_body)
    if dp_secret(tree) is None:
        return raw_body
    if raw_body.lstrip().startswith("{"):
        # Redact in the original document so its JSON types survive for whoever reads the inbox later.
        document = json.loads(raw_body)
        document["action"]["settings"]["widget"]["settings"][DP_SECRET_SETTING] = _REDACTED
        return json.dumps(document, ensure_ascii=False)
    tree["action"]["settings"]["widget"]["settings"][DP_SECRET_SETTING] = _REDACTED
    return encode_form(tree)


class DpDataSchema(_Loose):
    id = _id()
    element_type = fields.String(validate=_DIGITS, load_default="2")
    status_id = _id()
    pipeline_id = _id()
    direction_of_movement = fields.String()


class DpEventSchema(_Loose):
    type = _id()
    type_code = fields.String()
    data = fields.Nested(DpDataSchema, required=True)
    time = _id()


class DpHookSchema(_Loose):
    event = fields.Nested(DpEventSchema, required=True)
    account_id = _id()
    subdomain = fields.String()


def parse_dp_hook(portal_external_id: str, raw_body: str) -> CrmEvent | None:
    """A DP widget hook (types 1, 14, 15 on a lead) → `DpAction`; leaving the stage → None."""
    tree = parse_dp_body(raw_body)
    account_id = dp_account_id(tree)
    if account_id != portal_external_id:
        raise ForeignAccount(f"account_id: {account_id} is not this portal's account")
    event_type = _dig(tree, "event", "type")
    if not isinstance(event_type, str) or not event_type.isdigit():
        raise FormError("event[type]", "required, an integer")
    trigger = DP_EVENTS.get(event_type)
    if trigger is None:
        raise UnsupportedEvent(f"dp.{_DP_OTHER.get(event_type, event_type)}")
    hook = _load(DpHookSchema(), tree, "")
    data = hook["event"]["data"]
    if data["element_type"] != "2":
        # 12 is a customer (§3): customers are not deals.
        raise UnsupportedEvent(f"dp.{trigger}.element_type_{data['element_type']}")
    if data.get("direction_of_movement") == "went_from_trigger":
        # With action_multiple the lead leaving the action's stages is reported too; nothing to do then.
        return None
    raw_settings = _dig(tree, "action", "settings", "widget", "settings")
    settings: dict[str, str] = {}
    if isinstance(raw_settings, dict):
        for name, value in raw_settings.items():
            if name != DP_SECRET_SETTING:
                settings[name] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return DpAction(
        portal_external_id=portal_external_id,
        occurred_at=datetime.fromtimestamp(int(hook["event"]["time"]), tz=UTC),
        deal_id=data["id"],
        stage=StageRef(data["pipeline_id"], data["status_id"]),
        trigger=trigger,
        settings=settings,
    )
