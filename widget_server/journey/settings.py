"""A portal's journey settings (`portal.settings["journey"]`): what the templates leave to the clinic.

brand, clinic_phone, hygiene_price (text, "5 000 ₽"), review_links [url…], quiet_hours {from, to} (local,
default 21:00–09:00), message_field_id + bot_id (the CRM channel a patient message goes through), roles
{head, administrator, curator: CRM user id}, answer_fields {confirmation|nps|plus: field id}, tag_field_id,
loss_reason_field_id, lost_stage_id / won_stage_id, complex_treatment_pipelines [pipeline id…],
confirm_d1_mode (message | call_task: how the day-before confirmation goes out), curator_field_id and
plan_link_field_id (the deal fields «Нужен куратор» and «Ссылка на план лечения»), loss_reason_source
(field | crm: the CRM's own loss reason of a lost deal, amoCRM's `loss_reason_id`, instead of a custom field).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import DomainError

__all__ = [
    "EDITABLE",
    "JourneySettings",
    "SettingsInvalid",
    "journey_settings",
    "parse_hhmm",
    "validate_journey_settings",
]

DEFAULT_QUIET = ("21:00", "09:00")
CONFIRM_MODES = ("message", "call_task")
LOSS_REASON_SOURCES = ("field", "crm")


class SettingsInvalid(DomainError):
    code = "validation_failed"


def parse_hhmm(text: Any) -> time | None:
    """'09:00' → time(9, 0); None for anything else."""
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        return None
    try:
        hours, minutes = int(text[:2]), int(text[3:])
    except ValueError:
        return None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        return None
    return time(hours, minutes)


@dataclass(frozen=True)
class JourneySettings:
    brand: str = ""
    clinic_phone: str = ""
    hygiene_price: str = "5 000 ₽"
    review_links: tuple[str, ...] = ()
    quiet_from: time = time(21, 0)
    quiet_to: time = time(9, 0)
    message_field_id: str | None = None
    bot_id: str | None = None
    roles: Mapping[str, str] = field(default_factory=dict)
    answer_fields: Mapping[str, str] = field(default_factory=dict)
    tag_field_id: str | None = None
    loss_reason_field_id: str | None = None
    lost_stage_id: str = "lost"
    won_stage_id: str = "won"
    complex_treatment_pipelines: tuple[str, ...] = ()
    confirm_d1_mode: str = "message"
    curator_field_id: str = "Нужен куратор"
    plan_link_field_id: str = "Ссылка на план лечения"
    loss_reason_source: str = "field"

    def quiet_until(self, moment: datetime, tz: ZoneInfo) -> datetime | None:
        """The end of the quiet hours `moment` falls in, or None when a patient may be written to now."""
        local = moment.astimezone(tz)
        now = local.time()
        start, end = self.quiet_from, self.quiet_to
        if start == end:
            return None
        inside = (now >= start or now < end) if start > end else (start <= now < end)
        if not inside:
            return None
        day = local.date() if now < end else local.date() + timedelta(days=1)
        return datetime.combine(day, end, tzinfo=tz)


def journey_settings(portal_settings: Mapping[str, Any] | None) -> JourneySettings:
    doc: Mapping[str, Any] = (portal_settings or {}).get("journey") or {}
    quiet = doc.get("quiet_hours") or {}
    return JourneySettings(
        brand=str(doc.get("brand") or ""),
        clinic_phone=str(doc.get("clinic_phone") or ""),
        hygiene_price=str(doc.get("hygiene_price") or "5 000 ₽"),
        review_links=tuple(str(link) for link in doc.get("review_links") or ()),
        quiet_from=parse_hhmm(quiet.get("from")) or parse_hhmm(DEFAULT_QUIET[0]) or time(21),
        quiet_to=parse_hhmm(quiet.get("to")) or parse_hhmm(DEFAULT_QUIET[1]) or time(9),
        message_field_id=doc.get("message_field_id"),
        bot_id=doc.get("bot_id"),
        roles={str(k): str(v) for k, v in (doc.get("roles") or {}).items() if v},
        answer_fields={str(k): str(v) for k, v in (doc.get("answer_fields") or {}).items() if v},
        tag_field_id=doc.get("tag_field_id"),
        loss_reason_field_id=doc.get("loss_reason_field_id"),
        lost_stage_id=str(doc.get("lost_stage_id") or "lost"),
        won_stage_id=str(doc.get("won_stage_id") or "won"),
        complex_treatment_pipelines=tuple(str(p) for p in doc.get("complex_treatment_pipelines") or ()),
        confirm_d1_mode=str(doc.get("confirm_d1_mode") or "message"),
        curator_field_id=str(doc.get("curator_field_id") or "Нужен куратор"),
        plan_link_field_id=str(doc.get("plan_link_field_id") or "Ссылка на план лечения"),
        loss_reason_source=str(doc.get("loss_reason_source") or "field"),
    )


_TEXT_KEYS = (
    "brand",
    "clinic_phone",
    "hygiene_price",
    "message_field_id",
    "bot_id",
    "tag_field_id",
    "loss_reason_field_id",
    "lost_stage_id",
    "won_stage_id",
    "curator_field_id",
    "plan_link_field_id",
)
_FIELD_KEYS = (
    "message_field_id",
    "tag_field_id",
    "loss_reason_field_id",
    "curator_field_id",
    "plan_link_field_id",
)
_CHOICES = {"confirm_d1_mode": CONFIRM_MODES, "loss_reason_source": LOSS_REASON_SOURCES}
EDITABLE = (
    *_TEXT_KEYS,
    *_CHOICES,
    "review_links",
    "quiet_hours",
    "roles",
    "answer_fields",
    "complex_treatment_pipelines",
)


def validate_journey_settings(
    doc: Mapping[str, Any], *, users: Collection[str] | None, fields: Collection[str] | None
) -> dict[str, Any]:
    """The clean settings document, or SettingsInvalid naming the first bad key (`roles.head`, …)."""
    from .rules import ANSWER_KINDS, ROLES

    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in EDITABLE:
            raise SettingsInvalid(key, "not a journey setting")
        if key in _CHOICES:
            if value not in _CHOICES[key]:
                raise SettingsInvalid(key, f"one of {', '.join(_CHOICES[key])}")
        elif key in _TEXT_KEYS:
            if value is not None and (not isinstance(value, str) or len(value) > 500):
                raise SettingsInvalid(key, "text up to 500 characters, or null")
            if key in _FIELD_KEYS and value and fields is not None and value not in fields:
                raise SettingsInvalid(key, f"the CRM has no deal field {value!r}")
        elif key in ("review_links", "complex_treatment_pipelines"):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise SettingsInvalid(key, "a list of texts")
            if key == "review_links" and not all(v.startswith(("https://", "http://")) for v in value):
                raise SettingsInvalid(key, "links start with https://")
        elif key == "quiet_hours":
            if not isinstance(value, Mapping) or set(value) != {"from", "to"}:
                raise SettingsInvalid(key, "{from, to} as local HH:MM")
            for end in ("from", "to"):
                if parse_hhmm(value[end]) is None:
                    raise SettingsInvalid(f"quiet_hours.{end}", "local time HH:MM")
        elif key == "roles":
            if not isinstance(value, Mapping):
                raise SettingsInvalid(key, "role → CRM user id")
            for role, user in value.items():
                if role not in ROLES or role == "responsible":
                    raise SettingsInvalid(f"roles.{role}", "one of head, administrator, curator")
                if users is not None and str(user) not in users:
                    raise SettingsInvalid(f"roles.{role}", f"the CRM has no active user {user!r}")
        elif key == "answer_fields":
            if not isinstance(value, Mapping):
                raise SettingsInvalid(key, "answer kind → deal field id")
            for kind, field_id in value.items():
                if kind not in ANSWER_KINDS:
                    raise SettingsInvalid(f"answer_fields.{kind}", f"one of {', '.join(ANSWER_KINDS)}")
                if fields is not None and str(field_id) not in fields:
                    raise SettingsInvalid(f"answer_fields.{kind}", f"the CRM has no deal field {field_id!r}")
        out[key] = value
    return out
