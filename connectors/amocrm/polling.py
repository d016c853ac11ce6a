"""The polling fallback for accounts that refuse webhooks (research/amocrm.md open question 5).

A periodic job lists the leads changed since a watermark (`iter_leads_updated_since`) and stores each
one as an inbox event; this module turns such a stored lead back into the same `DealUpdated` an
`update` hook would have produced, so reactions and the loop guard work unchanged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..errors import AnomalousPayload
from ..types import DealUpdated, FieldValue, StageRef

__all__ = ["POLL_OVERLAP_S", "parse_polled_lead", "polled_dedupe_key"]

POLL_OVERLAP_S = 120
"""Each poll starts this far before the last `updated_at` seen: amo's clocks and our pages may disagree
by a little, and the inbox's dedupe key makes the overlap free."""


def polled_dedupe_key(lead: dict[str, Any]) -> str:
    # The same key an `update` hook of that moment gets would be better, but hooks key on the action too;
    # two inbox rows for one change are harmless (the second is an echo of nothing new).
    return f"poll:lead:{lead['id']}:{lead.get('updated_at')}"


def _values(custom: dict[str, Any]) -> FieldValue:
    texts = tuple(
        str(v["enum_id"]) if "enum_id" in v and v.get("enum_id") is not None else str(v.get("value", ""))
        for v in custom.get("values") or []
    )
    if not texts:
        return None
    return texts[0] if len(texts) == 1 else texts


def parse_polled_lead(portal_external_id: str, raw: str) -> DealUpdated:
    try:
        lead = json.loads(raw)
        lead_id, updated_at = str(int(lead["id"])), int(lead["updated_at"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AnomalousPayload(f"polled lead: {exc}") from None
    stage = None
    if lead.get("pipeline_id") and lead.get("status_id"):
        stage = StageRef(str(lead["pipeline_id"]), str(lead["status_id"]))
    responsible = lead.get("responsible_user_id")
    return DealUpdated(
        portal_external_id=portal_external_id,
        occurred_at=datetime.fromtimestamp(updated_at, UTC),
        deal_id=lead_id,
        stage=stage,
        responsible_user_id=str(responsible) if responsible else None,
        fields={
            str(custom["field_id"]): _values(custom)
            for custom in lead.get("custom_fields_values") or []
            if "field_id" in custom
        },
    )
