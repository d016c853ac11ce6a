"""Осмотр врача: a doctor (a CRM user with the doctor role) and a date; the results as text and document
links go to the deal's feed, and each next step becomes a task for its role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.orm import Session

from ..clock import local_today
from ..ledger import Actor
from ..models import Building, Examination, Portal
from .catalogue import TASK_ROLES
from .errors import InpatientConflict, InpatientError
from .mirror import queue_note, queue_task, task_user
from .prescriptions import doctor
from .stays import current_stay

__all__ = ["EXAMINATION_KINDS", "ExaminationDraft", "NextStepDraft", "add_examination"]

EXAMINATION_KINDS = {"first": "Первичный осмотр", "follow_up": "Повторный осмотр"}


@dataclass(frozen=True)
class NextStepDraft:
    text: str
    role: str
    due_date: date | None = None


@dataclass(frozen=True)
class ExaminationDraft:
    kind: str
    doctor_user_id: str
    examined_on: date
    results: str
    links: tuple[str, ...] = ()
    next_steps: tuple[NextStepDraft, ...] = ()


def add_examination(
    session: Session, portal: Portal, deal_id: str, draft: ExaminationDraft, actor: Actor
) -> Examination:
    stay = current_stay(session, portal, deal_id)
    if stay.status == "discharged":
        raise InpatientConflict("deal_id", "the patient is discharged")
    if draft.kind not in EXAMINATION_KINDS:
        raise InpatientError("kind", f"must be one of {', '.join(EXAMINATION_KINDS)}")
    if draft.examined_on < stay.admission_date:
        raise InpatientError("examined_on", "cannot be before the admission date")
    if draft.examined_on > local_today(portal.timezone) + timedelta(days=60):
        raise InpatientError("examined_on", "more than 60 days ahead")
    if not draft.results.strip() and not draft.links:
        raise InpatientError("results", "give the results as text or as document links")
    for i, step in enumerate(draft.next_steps):
        if not step.text.strip():
            raise InpatientError(f"next_steps[{i}].text", "must not be empty")
        if step.role not in TASK_ROLES:
            raise InpatientError(f"next_steps[{i}].role", f"must be one of {', '.join(TASK_ROLES)}")
    physician = doctor(session, portal, draft.doctor_user_id, "doctor_user_id")
    examination = Examination(
        portal_id=portal.id,
        stay_id=stay.id,
        kind=draft.kind,
        doctor_user_id=physician.crm_user_id,
        doctor_name=physician.name,
        examined_on=draft.examined_on,
        results=draft.results.strip(),
        links=list(draft.links),
        next_steps=[
            {
                "text": s.text.strip(),
                "role": s.role,
                "due_date": s.due_date.isoformat() if s.due_date else None,
            }
            for s in draft.next_steps
        ],
        created_by=actor.label,
    )
    session.add(examination)
    session.flush()
    lines = [f"{EXAMINATION_KINDS[draft.kind]} {draft.examined_on:%d.%m.%Y}, врач {physician.name}"]
    if examination.results:
        lines.append(f"Итоги: {examination.results}")
    if examination.links:
        lines.append("Документы: " + ", ".join(examination.links))
    if draft.next_steps:
        lines.append("Дальнейшие действия: " + "; ".join(s.text.strip() for s in draft.next_steps))
    queue_note(session, portal, stay.deal_id, "\n".join(lines), f"examination:{examination.id}")
    building = session.get(Building, stay.building_id)
    assert building is not None
    for i, step in enumerate(draft.next_steps):
        queue_task(
            session,
            portal,
            stay.deal_id,
            step.text.strip(),
            f"examination:{examination.id}:{i}",
            user_id=task_user(step.role, building, physician.crm_user_id),
            day=step.due_date or draft.examined_on,
        )
    return examination
