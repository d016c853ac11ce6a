"""Per-portal in-patient settings (portal.settings["inpatient"]), with the defaults the issue names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models import Portal

__all__ = ["InpatientSettings", "inpatient_settings"]


@dataclass(frozen=True)
class InpatientSettings:
    overdue_after_min: int = 30
    """A dose not marked this long after its time is overdue: a task for the building manager, once."""
    due_ahead_min: int = 30
    """How early a dose shows as due (a nurse starts the round before the hour)."""
    lookback_hours: int = 12
    """Unmarked doses older than this leave the nurse's list (they were escalated long before)."""
    message_field_id: str | None = None
    """Deal field a CRM channel reads to message the representative; unset: a task for the manager."""
    message_bot_id: str | None = None
    """amoCRM Salesbot that sends the field's text (ignored where a robot reacts to the field)."""


def inpatient_settings(portal: Portal) -> InpatientSettings:
    raw: dict[str, Any] = dict((portal.settings or {}).get("inpatient") or {})
    known = {k: v for k, v in raw.items() if k in InpatientSettings.__dataclass_fields__}
    return InpatientSettings(**known)
