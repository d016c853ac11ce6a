"""In-patient jobs: the sweep that escalates overdue doses, sends arrival-day tasks and tells relatives of
purchase requests and low balance; and the outbox operations for messages and the representative's
contact.

Every part of the sweep is idempotent on its own rows (one escalation per dose, `tasked_on` per arrival,
one notice per event), so the sweep runs often and a double or late run adds nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from connectors.base import CrmClient
from connectors.types import CrmEvent, DealStageChanged, DealUpdated, NewContact

from .. import clock, runtime
from ..clock import local_today
from ..inpatient import arrival_day_tasks, escalate_overdue, inform_about_ledger
from ..inpatient.arrivals import ask_for_arrival, ready_to_sign_stage, remember_stage, worth_reading
from ..models import Building, InpatientStay, Portal
from ..registry import crm_for
from .joblog import logged_job

__all__ = ["inpatient_on_deal_event", "representative_contact", "run_inpatient_sweep", "sweep_portal"]


def sweep_portal(portal_id: int, now: datetime) -> dict[str, int]:
    """One portal's in-patient duties at `now`, each step in its own transaction (a failure in one does
    not hold back the others)."""
    db = runtime.current().db
    detail: dict[str, int] = {}
    with db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        detail["escalated"] = escalate_overdue(session, portal, now)
    with db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        detail["arrivals"] = arrival_day_tasks(session, portal, local_today(portal.timezone, now))
    with db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        detail["relatives"] = inform_about_ledger(session, portal)
    return detail


@logged_job("inpatient_sweep")
def run_inpatient_sweep(now: datetime | None = None) -> str:
    moment = now or clock.now_utc()
    with runtime.current().db.transaction() as session:
        # Only portals that run a hospital: one cheap query for everyone else.
        portal_ids = list(
            session.scalars(
                select(Portal.id)
                .where(Portal.status == "active", Portal.id.in_(select(Building.portal_id)))
                .order_by(Portal.id)
            )
        )
    totals = {"escalated": 0, "arrivals": 0, "relatives": 0}
    for portal_id in portal_ids:
        for name, count in sweep_portal(portal_id, moment).items():
            totals[name] += count
    return " ".join(f"{k} {v}" for k, v in totals.items())


def inpatient_on_deal_event(portal_id: int, event: CrmEvent) -> None:
    """A person moved a sales deal (amoCRM `leads[status]`, Bitrix24 ONCRMDEALMOVETOCATEGORY) or changed it
    (Bitrix24 ONCRMDEALUPDATE, which names only the deal): into the ready-to-sign stage, ask once for the
    arrival date and the budget. Where the deal is gets remembered, so that updates of deals that cannot be
    entering the stage (outside its pipeline, admitted, asked) cost no read of the deal."""
    assert isinstance(event, DealStageChanged | DealUpdated)
    rt = runtime.current()
    stage = event.stage
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or ready_to_sign_stage(portal) is None:
            return
        if stage is None and not worth_reading(session, portal, event.deal_id):
            return
    if stage is None:
        # Outside any transaction: a CRM call must not hold our database (SQLite's write lock) meanwhile.
        stage = crm_for(portal, rt).get_deal(event.deal_id).stage
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        ask_for_arrival(session, portal, event.deal_id, stage.pipeline_id, stage.stage_id)
        remember_stage(session, portal, event.deal_id, stage.pipeline_id, stage.stage_id)


# --- outbox operations (jobs/operations.py LAZY_OPERATIONS) --------------------------------------------


def representative_contact(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """The representative as a CRM contact: found by phone, else created; linked to the deal (so the card
    shows who speaks for the patient; linking again on a retry is harmless); its id kept on the stay."""
    phone = payload.get("phone")
    found = crm.find_contacts_by_phone(phone) if phone else []
    if found:
        contact = found[0]
    else:
        contact = crm.create_contact(
            NewContact(
                name=payload["name"],
                phones=(phone,) if phone else (),
                emails=(payload["email"],) if payload.get("email") else (),
            ),
            idempotency_key=key,
        )
    crm.link_contact(str(payload["deal_id"]), contact.id)
    with runtime.current().db.transaction() as session:
        session.execute(
            update(InpatientStay)
            .where(InpatientStay.id == int(payload["stay_id"]))
            .values(representative_contact_id=contact.id)
        )
    return {"contact_id": contact.id, "found": bool(found)}
