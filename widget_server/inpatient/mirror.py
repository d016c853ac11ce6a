"""What the CRM is told of a stay: stage moves, feed notes, tasks for the right person, the representative's
contact, messages to relatives. All through the outbox, committed with the change that caused them."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from ..clock import local_today
from ..models import Building, InpatientStay, OutboxJob, Portal
from ..outbox import enqueue_outbox

__all__ = [
    "end_of_workday",
    "queue_move",
    "queue_note",
    "queue_representative_contact",
    "queue_task",
    "task_user",
]


def end_of_workday(portal: Portal, day: date) -> str:
    return datetime.combine(day, time(18, 0), ZoneInfo(portal.timezone)).isoformat()


def queue_note(session: Session, portal: Portal, deal_id: str, text: str, key: str) -> OutboxJob:
    return enqueue_outbox(
        session,
        portal_id=portal.id,
        operation="add_note",
        payload={"deal_id": deal_id, "text": text},
        idempotency_key=f"inpatient-note:{key}",
        deal_id=deal_id,
        origin="inpatient",
    )


def queue_move(
    session: Session, portal: Portal, deal_id: str, pipeline_id: str, stage_id: str, key: str
) -> OutboxJob:
    return enqueue_outbox(
        session,
        portal_id=portal.id,
        operation="move_deal",
        payload={"deal_id": deal_id, "pipeline_id": pipeline_id, "stage_id": stage_id},
        idempotency_key=f"inpatient-move:{key}",
        deal_id=deal_id,
        origin="inpatient",
    )


def task_user(role: str, building: Building, doctor_user_id: str | None = None) -> str | None:
    """The CRM user a role's task goes to; None means the deal's responsible manager. Without a nurses'
    user or a known doctor the building manager takes it: a task nobody owns would be a silent miss."""
    if role == "building_manager":
        return building.manager_user_id
    if role == "nurse":
        return building.nurse_user_id or building.manager_user_id
    if role == "doctor":
        return doctor_user_id or building.manager_user_id
    return None


def queue_task(
    session: Session,
    portal: Portal,
    deal_id: str,
    text: str,
    key: str,
    *,
    user_id: str | None,
    due: datetime | None = None,
    day: date | None = None,
) -> OutboxJob:
    """A task for `user_id`, or for whoever is responsible for the deal when it is sent (user_id None)."""
    if due is not None:
        due_at = due.isoformat()
    else:
        due_at = end_of_workday(portal, day or local_today(portal.timezone))
    payload: dict[str, object] = {"deal_id": deal_id, "text": text, "due_at": due_at}
    if user_id is not None:
        payload["user_id"] = user_id
    return enqueue_outbox(
        session,
        portal_id=portal.id,
        operation="create_task" if user_id is not None else "task_for_responsible",
        payload=payload,
        idempotency_key=f"inpatient-task:{key}",
        deal_id=deal_id,
        origin="inpatient",
    )


def queue_representative_contact(session: Session, portal: Portal, stay: InpatientStay) -> OutboxJob | None:
    if not (stay.representative_phone or stay.representative_email):
        return None
    return enqueue_outbox(
        session,
        portal_id=portal.id,
        operation="inpatient_representative_contact",
        payload={
            "stay_id": stay.id,
            "deal_id": stay.deal_id,
            "name": stay.representative_name,
            "phone": stay.representative_phone,
            "email": stay.representative_email,
        },
        idempotency_key=f"inpatient-contact:{stay.id}",
        deal_id=stay.deal_id,
        origin=f"inpatient:{stay.id}",
    )
