"""amoCRM v4 response bodies → our neutral types (research/amocrm.md §5).

Plain functions rather than marshmallow schemas: the bodies are HAL documents whose only variable part is
`custom_fields_values`, which `fields.py` decodes by `field_type`. Unknown keys are ignored, missing
optional ones read as None, and a body without an `id` is a platform anomaly (`RetryLater` upstream).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..phones import e164
from ..types import Contact, CrmUser, Deal, StageRef
from .const import LOST_STATUS_ID, WON_STATUS_ID
from .fields import decode_fields

__all__ = [
    "embedded",
    "normalize_phone",
    "parse_contact",
    "parse_deal",
    "parse_error",
    "parse_user",
    "phone_values",
]

DEFAULT_REGION = "RU"


def embedded(body: Mapping[str, Any] | None, name: str) -> list[Mapping[str, Any]]:
    if not body:
        return []
    items = (body.get("_embedded") or {}).get(name) or []
    return [item for item in items if isinstance(item, Mapping)]


def _sid(value: Any) -> str | None:
    return None if value in (None, 0, "0", "") else str(value)


def parse_deal(lead: Mapping[str, Any], tz: ZoneInfo, aliases: Mapping[str, str]) -> Deal:
    status = str(lead.get("status_id"))
    price = lead.get("price")
    created = lead.get("created_at")
    return Deal(
        id=str(lead["id"]),
        name=str(lead.get("name") or ""),
        stage=StageRef(str(lead.get("pipeline_id")), status),
        responsible_user_id=_sid(lead.get("responsible_user_id")),
        # amoCRM keeps whole currency units (§5.2 `price`); we speak minor units.
        price_minor=int(price) * 100 if isinstance(price, int) and not isinstance(price, bool) else None,
        fields=decode_fields(lead.get("custom_fields_values"), tz, aliases),
        contact_ids=tuple(str(c["id"]) for c in embedded(lead, "contacts") if "id" in c),
        is_closed=status in (WON_STATUS_ID, LOST_STATUS_ID),
        created_at=datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None,
        # `with=loss_reason` embeds the lead's reason ({id, name}) beside its `loss_reason_id`.
        loss_reason=next((str(r["name"]) for r in embedded(lead, "loss_reason") if r.get("name")), None),
    )


def normalize_phone(raw: str, region: str = "RU") -> str | None:
    """E.164 of a phone as typed into the CRM ("8 (916) 123-45-67" → "+79161234567"); None if invalid."""
    return e164(raw, region)


def _multitext(entity: Mapping[str, Any], code: str) -> list[str]:
    out: list[str] = []
    for item in entity.get("custom_fields_values") or ():
        if item.get("field_code") == code:
            out.extend(str(v.get("value")) for v in item.get("values") or () if v.get("value"))
    return out


def phone_values(contact: Mapping[str, Any]) -> list[str]:
    return _multitext(contact, "PHONE")


def parse_contact(contact: Mapping[str, Any]) -> Contact:
    phones = [normalize_phone(p) or p for p in phone_values(contact)]
    return Contact(
        id=str(contact["id"]),
        name=str(contact.get("name") or ""),
        phones=tuple(dict.fromkeys(phones)),
        emails=tuple(dict.fromkeys(_multitext(contact, "EMAIL"))),
        responsible_user_id=_sid(contact.get("responsible_user_id")),
    )


def parse_user(user: Mapping[str, Any]) -> CrmUser:
    rights = user.get("rights") or {}
    return CrmUser(
        id=str(user["id"]),
        name=str(user.get("name") or ""),
        email=user.get("email") or None,
        is_active=bool(rights.get("is_active", True)),
        is_admin=bool(rights.get("is_admin", False)),
        is_online=None,  # §5.4: amoCRM has no presence field.
    )


def parse_error(body: Any) -> tuple[str, str | None, str | None]:
    """(detail, code, path) from a problem+json body; the first validation error wins (§5.5)."""
    if not isinstance(body, Mapping):
        return "", None, None
    detail = str(body.get("detail") or body.get("title") or "")
    for group in body.get("validation-errors") or ():
        for error in (group or {}).get("errors") or ():
            return (
                str(error.get("detail") or detail),
                str(error.get("code")) if error.get("code") else None,
                str(error.get("path")) if error.get("path") else None,
            )
    code = body.get("code") or body.get("title")
    return detail, str(code) if code else None, None
