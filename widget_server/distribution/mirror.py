"""What the CRM shows of a decision, through the outbox after our commit: the deal's responsible, a task
for them due in `take_within_min`, a note explaining the choice, and the deal's contacts, company and open
tasks handed to them; supervisors get an alert when a lead waits for nobody."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import DistributionAssignment, DistributionDecision, Portal, PortalUser
from ..outbox import enqueue_outbox
from .engine import Outcome, as_dicts

__all__ = ["REASON_TEXT", "decision_note", "queue_assignment_mirror", "queue_supervisor_alert", "short_name"]

REASON_TEXT = {
    "round_robin": "по очереди",
    "weighted": "по коэффициенту",
    "least_loaded": "по загрузке",
    "random": "случайно (с весами)",
    "priority_order": "по приоритету",
    "sticky": "ответственный за контакт",
    "manual": "вручную",
    "outside_user": "вне рабочего окна",
}
_STATUS_TEXT = {"paused": "на паузе", "off": "не в смене", "absent": "отсутствует", "inactive": "отключён"}
_NOTED = ("paused", "absent")
_MAX_NOTED = 5
_TRIGGER_TEXT = {
    "not_taken": "не взята в работу вовремя",
    "handover": "передача смены",
    "force": "переназначение",
}


def short_name(name: str) -> str:
    """«Иванова Анна» → «Иванова А.»: how the clinics write operators in notes."""
    parts = name.split()
    if len(parts) < 2:
        return name
    return f"{parts[0]} " + " ".join(f"{p[0]}." for p in parts[1:])


def _names(session: Session, ids: set[int]) -> dict[int, PortalUser]:
    if not ids:
        return {}
    return {u.id: u for u in session.scalars(select(PortalUser).where(PortalUser.id.in_(ids)))}


def decision_note(
    users: Mapping[int, PortalUser], decision: DistributionDecision, outcome: Outcome, rule_name: str
) -> str:
    chosen = users[decision.chosen_user_id]  # type: ignore[index]
    reason = REASON_TEXT.get(outcome.reason, outcome.reason)
    candidates = as_dicts(outcome.candidates)
    on_shift = sum(1 for c in candidates if c["status"] == "on_shift")
    parts = [f"причина: {reason}", f"{on_shift} на смене"]
    for c in candidates:
        if c["user_id"] in users and c["status"] in _NOTED and c["user_id"] != decision.chosen_user_id:
            parts.append(f"{short_name(users[c['user_id']].name)} {_STATUS_TEXT[c['status']]}")
    if decision.trigger in _TRIGGER_TEXT:
        parts.insert(0, _TRIGGER_TEXT[decision.trigger])
    return f"Назначено: {short_name(chosen.name)} (правило «{rule_name}», {', '.join(parts)})"


def queue_assignment_mirror(
    session: Session,
    portal: Portal,
    assignment: DistributionAssignment,
    decision: DistributionDecision,
    doc: Mapping[str, Any],
    outcome: Outcome,
) -> None:
    mirror = doc.get("mirror") or {}
    # The note names who is away for a moment (paused, absent), not everyone off today; a few at most.
    noted = [row[0] for row in outcome.candidates if row[1] in _NOTED][:_MAX_NOTED]
    ids = {*noted, decision.chosen_user_id or 0}
    users = _names(session, ids)
    chosen = users.get(decision.chosen_user_id or 0)
    if chosen is None:
        return
    key = f"distribution:{decision.id}"
    common = {"portal_id": portal.id, "deal_id": assignment.deal_id, "origin": f"distribution:{decision.id}"}
    if mirror.get("responsible", True):
        enqueue_outbox(
            session, operation="set_responsible", idempotency_key=f"{key}:responsible",
            payload={"deal_id": assignment.deal_id, "user_id": chosen.crm_user_id}, **common,
        )  # fmt: skip
    if mirror.get("task", True):
        due = decision.at + timedelta(minutes=int(doc.get("take_within_min", 15)))
        enqueue_outbox(
            session, operation="create_task", idempotency_key=f"{key}:task",
            payload={"deal_id": assignment.deal_id, "user_id": chosen.crm_user_id,
                     "text": doc.get("task_text"), "due_at": due.isoformat()},
            **common,
        )  # fmt: skip
    if mirror.get("note", True):
        rule_name = (decision.record.get("rule") or {}).get("name", "")
        note = decision_note(users, decision, outcome, rule_name)
        enqueue_outbox(
            session, operation="add_note", idempotency_key=f"{key}:note",
            payload={"deal_id": assignment.deal_id, "text": note},
            **common,
        )  # fmt: skip
    # Rules stored before these options existed carry none of them: the defaults (on) apply.
    follow = {
        "contacts": bool(mirror.get("contact", True)),
        "company": bool(mirror.get("company", True)),
        "open_tasks": bool(mirror.get("open_tasks", True)),
    }
    if any(follow.values()):
        _queue_hand_over(
            session, {"deal_id": assignment.deal_id, "user_id": chosen.crm_user_id, **follow},
            key=f"{key}:hand_over", common=common,
        )  # fmt: skip


HAND_OVER_BATCH = 50
"""Hand-overs one job carries: amoCRM's and Bitrix24's batch size."""
_HAND_OVER_JOB = "distribution_hand_over_job"


def _queue_hand_over(session: Session, item: dict[str, Any], *, key: str, common: dict[str, Any]) -> None:
    """Decisions made in one transaction (a sweep draining a queue, a shift handed over) share one hand-over
    job of up to 50 leads: the CRM then reads their links and writes their contacts, companies and tasks in
    a few batch requests instead of about five per lead."""
    pending = session.info.get(_HAND_OVER_JOB)
    if pending is not None:
        transaction, portal_id, job = pending
        handovers = job.payload["handovers"]
        if (
            transaction is session.get_transaction()
            and portal_id == common["portal_id"]
            and len(handovers) < HAND_OVER_BATCH
        ):
            job.payload = {**job.payload, "handovers": [*handovers, item]}
            return
    job = enqueue_outbox(
        session, operation="distribution_hand_over", idempotency_key=key,
        payload={"handovers": [item]}, **common,
    )  # fmt: skip
    session.info[_HAND_OVER_JOB] = (session.get_transaction(), common["portal_id"], job)


def _supervisors(session: Session, portal: Portal, doc: Mapping[str, Any]) -> list[PortalUser]:
    named = set(doc.get("supervisor_user_ids") or ())
    users = session.scalars(
        select(PortalUser)
        .where(PortalUser.portal_id == portal.id, PortalUser.active.is_(True))
        .order_by(PortalUser.id)
    ).all()
    if named:
        return [u for u in users if u.id in named]
    explicit = [u for u in users if "supervisor" in (u.roles or [])]
    return explicit or [u for u in users if "admin" in (u.roles or [])]


def queue_supervisor_alert(
    session: Session,
    portal: Portal,
    assignment: DistributionAssignment,
    doc: Mapping[str, Any],
    decision: DistributionDecision,
    *,
    task: bool = False,
) -> None:
    """One alert when a pool's queue starts (not one per lead); a task when a lead ran out of hops."""
    for supervisor in _supervisors(session, portal, doc):
        key = f"distribution:{decision.id}:supervisor:{supervisor.id}"
        common = {
            "portal_id": portal.id,
            "deal_id": assignment.deal_id,
            "origin": f"distribution:{decision.id}",
        }
        if task:
            enqueue_outbox(
                session, operation="create_task", idempotency_key=key,
                payload={"deal_id": assignment.deal_id, "user_id": supervisor.crm_user_id,
                         "text": "Заявку никто не взял в работу: назначьте ответственного",
                         "due_at": (decision.at + timedelta(minutes=15)).isoformat()},
                **common,
            )  # fmt: skip
        else:
            enqueue_outbox(
                session, operation="notify_user", idempotency_key=key,
                payload={"user_id": supervisor.crm_user_id,
                         "text": f"Заявка {assignment.deal_id} ждёт в очереди: никого нет на смене"},
                **common,
            )  # fmt: skip
