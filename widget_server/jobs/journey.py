"""Patient journey in the background: the 5-minute sweep that catches up everything due since the last one,
evaluation right after an event, the reactions to CRM deal events, and the journey's outbox operations
(a patient message through the CRM's channel; a new deal copied from the anchor deal, then its actions)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from connectors.base import CrmClient
from connectors.types import CrmEvent, DealStageChanged, DealUpdated, NewDeal, OutgoingMessage, StageRef

from .. import clock, runtime
from ..journey.engine import FireResult, RuleSet, fire_due, on_deal_change
from ..journey.settings import journey_settings
from ..models import JourneyDeal, JourneyRule, JourneySweep, Portal, RuleFiring
from ..registry import crm_for
from .joblog import logged_job
from .operations import run_operation

__all__ = [
    "evaluate_journey",
    "journey_add_tag",
    "journey_create_deal",
    "journey_on_deal_event",
    "journey_send_message",
    "run_journey_sweep",
    "sweep_portal",
]

log = logging.getLogger(__name__)

CHUNK = 1000
NEW_LEAD_AGE = timedelta(days=1)


def sweep_portal(portal_id: int, *, chunk: int = CHUNK) -> FireResult:
    """Decide everything of the portal due by now, a chunk per transaction, and move its watermark."""
    rt = runtime.current()
    now = clock.now_utc()
    total = FireResult()
    while True:
        with rt.db.transaction() as session:
            portal = session.get(Portal, portal_id)
            if portal is None or not portal.is_usable:
                return total
            result = fire_due(session, portal, now, limit=chunk)
        total.add(result)
        if result.fired + result.expired + result.skipped + result.postponed < chunk:
            break
    with rt.db.transaction() as session:
        mark = session.scalar(
            select(JourneySweep).where(JourneySweep.portal_id == portal_id).with_for_update()
        )
        if mark is None:
            session.add(JourneySweep(portal_id=portal_id, swept_until=now, counts=total.as_dict()))
        elif mark.swept_until < now:
            mark.swept_until, mark.counts = now, total.as_dict()
    return total


@logged_job("evaluate_journey")
def evaluate_journey(portal_id: int) -> str:
    """Right after an event planned something due now (a booking notice, an answer's reaction)."""
    return str(sweep_portal(portal_id).as_dict())


@logged_job("run_journey_sweep")
def run_journey_sweep() -> str:
    with runtime.current().db.transaction() as session:
        portal_ids = list(
            session.scalars(
                select(Portal.id)
                .where(Portal.status == "active")
                .where(select(JourneyRule.id).where(JourneyRule.portal_id == Portal.id).exists())
                .order_by(Portal.id)
            )
        )
    total = FireResult()
    for portal_id in portal_ids:
        total.add(sweep_portal(portal_id))
    return f"portals {len(portal_ids)} {total.as_dict()}"


def _crm_facts(portal_id: int, deal_id: str, stage: StageRef | None) -> tuple[str | None, list[str] | None]:
    """What the hook does not carry, read from the CRM only when a rule needs it and before our own
    transaction (a sandbox CRM writes to this database): the deal's own loss reason when it was lost and the
    portal reads reasons from the CRM (amoCRM's `loss_reason_id`), and the phones a new lead came with when a
    `phone_flagged` rule is on."""
    rt = runtime.current()
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or stage is None:
            return None, None
        settings = journey_settings(portal.settings)
        lost = settings.loss_reason_source == "crm" and stage.stage_id == settings.lost_stage_id
        new_lead = (
            bool(RuleSet.load(session, portal_id).of("phone_flagged"))
            and session.scalar(
                select(JourneyDeal.id).where(
                    JourneyDeal.portal_id == portal_id, JourneyDeal.deal_id == deal_id
                )
            )
            is None
        )
    if not (lost or new_lead):
        return None, None
    crm = crm_for(portal, rt)
    deal = crm.get_deal(deal_id)
    if deal.created_at is not None and clock.now_utc() - deal.created_at > NEW_LEAD_AGE:
        # A deal merely new to us (the first change after the journey was enabled) is no fresh lead.
        new_lead = False
    phones = (
        [p for contact in deal.contact_ids for p in crm.get_contact(contact).phones] if new_lead else None
    )
    return (deal.loss_reason if lost else None), phones


def journey_on_deal_event(portal_id: int, event: CrmEvent) -> None:
    """A person moved a deal or changed its fields in the CRM (never our own echo)."""
    assert isinstance(event, DealStageChanged | DealUpdated)
    stage = event.stage
    fields = dict(event.fields) if isinstance(event, DealUpdated) else {}
    loss_reason, phones = _crm_facts(portal_id, event.deal_id, stage)
    rt = runtime.current()
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None:
            return
        enabled = session.scalar(
            select(JourneyRule.id)
            .where(JourneyRule.portal_id == portal_id, JourneyRule.enabled.is_(True))
            .limit(1)
        )
        if enabled is None:
            return
        planned = on_deal_change(
            session,
            portal,
            event.deal_id,
            clock.now_utc(),
            pipeline_id=stage.pipeline_id if stage else None,
            stage_id=stage.stage_id if stage else None,
            fields=fields,
            loss_reason=loss_reason,
            phones=phones,
        )
    if planned:
        sweep_portal(portal_id)


# --- outbox operations --------------------------------------------------------------------------------------


def journey_send_message(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    crm.send_message(
        OutgoingMessage(
            deal_id=str(payload["deal_id"]),
            text=payload["text"],
            text_field_id=str(payload["text_field_id"]),
            bot_id=payload.get("bot_id"),
        ),
        idempotency_key=key,
    )
    return {}


def journey_add_tag(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """The tag joins those the deal has (a retry adds nothing: a tag the deal has is left as it is)."""
    crm.add_deal_tag(str(payload["deal_id"]), payload["tag"], tag_field_id=payload.get("tag_field_id"))
    return {}


def journey_create_deal(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """The new deal (once per key), where it came from, then the rule's actions on it (each keyed too, so a
    retry after a failure half-way sends only what is missing)."""
    if not payload.get("stage_id"):
        # The stage comes from a field (complex treatment's option) that was empty when the rule fired.
        return {"skipped": "no stage to create the deal in"}
    source = crm.get_deal(str(payload["source_deal_id"])) if payload.get("source_deal_id") else None
    copied = {f: source.fields[f] for f in payload.get("copy_fields") or () if source and f in source.fields}
    deal = crm.create_deal(
        NewDeal(
            name=payload["name"],
            stage=StageRef(str(payload["pipeline_id"]), str(payload["stage_id"])),
            responsible_user_id=source.responsible_user_id if source else None,
            fields={**(payload.get("fields") or {}), **copied},
            contact_ids=source.contact_ids if source else (),
        ),
        idempotency_key=key,
    )
    with runtime.current().db.transaction() as session:
        firing = session.get(RuleFiring, int(payload["firing_id"]))
        if firing is not None:
            firing.context = {**(firing.context or {}), "created_deal_id": deal.id}
            known = session.scalar(
                select(JourneyDeal).where(
                    JourneyDeal.portal_id == firing.portal_id, JourneyDeal.deal_id == deal.id
                )
            )
            if known is None:
                session.add(
                    JourneyDeal(
                        portal_id=firing.portal_id,
                        deal_id=deal.id,
                        pipeline_id=str(payload["pipeline_id"]),
                        stage_id=str(payload["stage_id"]),
                        stage_entered_at=clock.now_utc(),
                        fields={},
                        patient_id=payload.get("patient_id"),
                        origin_deal_id=payload.get("source_deal_id"),
                    )
                )
    for index, step in enumerate(payload.get("then") or ()):
        run_operation(crm, step["operation"], {**step["payload"], "deal_id": deal.id}, f"{key}-then-{index}")
    return {"deal_id": deal.id}
