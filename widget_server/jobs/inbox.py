"""Process one stored inbound event: parse it with its source's parser and record the outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable

from connectors.amocrm.hooks import parse_account_hook, parse_dp_hook
from connectors.amocrm.polling import parse_polled_lead
from connectors.bitrix24.events import parse_event as parse_bitrix24_event
from connectors.bitrix24.events import parse_robot as parse_bitrix24_robot
from connectors.errors import AnomalousPayload, UnsupportedEvent
from connectors.types import (
    CrmEvent,
    DealCreated,
    DealStageChanged,
    DealUpdated,
    DpAction,
    EventBatch,
    RobotCall,
)

from .. import runtime
from ..loop_guard import is_echo
from ..models import InboxEvent, Portal, utcnow
from ..sandbox.hooks import parse_hook as parse_sandbox_hook
from .bitrix24 import run_robot
from .deal_reactions import restore_stay_fields
from .distribution import (
    distribute_on_dp_action,
    distribute_on_new_deal,
    distribute_on_stage_change,
    record_reassignment,
)
from .inpatient import inpatient_on_deal_event
from .joblog import logged_job
from .journey import journey_on_deal_event
from .mis.intake import offer_intake_lead

__all__ = ["EVENT_REACTIONS", "PARSERS", "process_inbox_event"]

log = logging.getLogger(__name__)
# Zulip keeps unsupported events in their own log so that they are reviewed, not lost in the noise.
unsupported_log = logging.getLogger("widget_server.unsupported_events")

PARSERS: dict[str, Callable[[str, str], CrmEvent | None]] = {
    "sandbox": parse_sandbox_hook,
    "amocrm": parse_account_hook,
    "amocrm_dp": parse_dp_hook,
    "bitrix24": parse_bitrix24_event,
    "bitrix24_robot": parse_bitrix24_robot,
    "amocrm_poll": parse_polled_lead,
}

EVENT_REACTIONS: dict[type[CrmEvent], list[Callable[[int, CrmEvent], None]]] = {
    DealUpdated: [restore_stay_fields, record_reassignment, journey_on_deal_event, inpatient_on_deal_event],
    DealCreated: [distribute_on_new_deal, offer_intake_lead],
    DealStageChanged: [
        distribute_on_stage_change,
        journey_on_deal_event,
        offer_intake_lead,
        inpatient_on_deal_event,
    ],
    DpAction: [distribute_on_dp_action],
    RobotCall: [run_robot],
}
"""What each feature does on an event type (e.g. the ledger on a person's edit of its deal fields).
Reactions never see our own writes' echoes (`loop_guard`)."""


@logged_job("process_inbox_event")
def process_inbox_event(event_id: int) -> str:
    rt = runtime.current()
    with rt.db.transaction() as session:
        event = session.get(InboxEvent, event_id)
        if event is None or event.outcome != "pending":
            return "skipped"
        portal = session.get(Portal, event.portal_id)
        assert portal is not None
        source, raw, external_id, portal_id = event.source, event.raw_body, portal.external_id, portal.id
        event.attempts += 1

    outcome, error = "handled", None
    try:
        parsed = PARSERS[source](external_id, raw)
        if parsed is None:
            outcome = "ignored"
        else:
            # One amoCRM delivery carries every entity that changed at that moment.
            items = parsed.events if isinstance(parsed, EventBatch) else (parsed,)
            theirs = [item for item in items if not is_echo(source, rt.redis, portal_id, item)]
            if items and not theirs:
                outcome = "own_write"
            for item in theirs:
                for reaction in EVENT_REACTIONS.get(type(item), []):
                    reaction(portal_id, item)
    except UnsupportedEvent as exc:
        outcome, error = "unsupported", str(exc)
        unsupported_log.warning("portal %s: %s", portal_id, exc)
    except AnomalousPayload as exc:
        outcome, error = "failed", f"anomalous payload: {exc}"
    except Exception as exc:
        log.exception("inbox event %s failed", event_id)
        outcome, error = "failed", f"{type(exc).__name__}: {exc}"

    with rt.db.transaction() as session:
        event = session.get(InboxEvent, event_id)
        assert event is not None
        event.outcome, event.error, event.processed_at = outcome, error, utcnow()
    return outcome
