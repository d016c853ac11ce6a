"""A portal's journey settings (`portal.settings["journey"]`): what the templates leave to the clinic.

brand, clinic_phone, hygiene_price (text, "5 000 ₽"), review_links [url…], quiet_hours {from, to} (local,
default 21:00–09:00), message_field_id + bot_id (the CRM channel a patient message goes through), roles
{head, administrator, curator: CRM user id}, answer_fields {confirmation|nps|plus: field id}, tag_field_id,
loss_reason_field_id, lost_stage_id / won_stage_id, complex_treatment_pipelines [pipeline id…].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["JourneySettings", "journey_settings", "parse_hhmm"]

DEFAULT_QUIET = ("21:00", "09:00")


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
    )
