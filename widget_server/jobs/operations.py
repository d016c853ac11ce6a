"""Outbox operations: the JSON payload of a job turned into one CrmClient call.

Every operation is safe to repeat: updates and moves are idempotent by nature, creates pass the job's
idempotency key to the connector.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from connectors.base import CrmClient
from connectors.types import DealUpdate, FieldValue, NewTask, StageRef

from ..ledger.notes import note_text

__all__ = [
    "BATCHED_OPERATIONS",
    "LAZY_OPERATIONS",
    "OPERATIONS",
    "deal_fields_of",
    "deal_update_of",
    "is_operation",
    "resolve_operation",
    "run_operation",
]


def _field_value(value: Any) -> FieldValue:
    if isinstance(value, dict) and set(value) == {"date"}:
        return date.fromisoformat(value["date"])
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return value


def _add_note(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    note = crm.add_note(str(payload["deal_id"]), note_text(payload), idempotency_key=key)
    return {"note_id": note.id}


def _update_deal_fields(crm: CrmClient, payload: dict[str, Any], _key: str) -> dict[str, Any]:
    crm.update_deal_fields(*deal_fields_of("update_deal_fields", payload))
    return {}


def _move_deal(crm: CrmClient, payload: dict[str, Any], _key: str) -> dict[str, Any]:
    crm.move_deal(
        str(payload["deal_id"]),
        StageRef(str(payload["pipeline_id"]), str(payload["stage_id"])),
        loss_reason=payload.get("loss_reason"),
    )
    return {}


def _create_task(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    task = crm.create_task(
        NewTask(
            deal_id=str(payload["deal_id"]),
            responsible_user_id=str(payload["user_id"]),
            text=payload["text"],
            due_at=datetime.fromisoformat(payload["due_at"]),
        ),
        idempotency_key=key,
    )
    return {"task_id": task.id}


def _set_responsible(crm: CrmClient, payload: dict[str, Any], _key: str) -> dict[str, Any]:
    crm.set_responsible(str(payload["deal_id"]), str(payload["user_id"]))
    return {}


def _notify_user(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    crm.notify_user(str(payload["user_id"]), payload["text"], idempotency_key=key)
    return {}


def _task_for_responsible(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """A task for whoever is responsible for the deal when the job runs (it may change meanwhile)."""
    deal = crm.get_deal(str(payload["deal_id"]))
    if deal.responsible_user_id is None:
        return {"skipped": "deal has no responsible user"}
    task = crm.create_task(
        NewTask(
            deal_id=deal.id,
            responsible_user_id=deal.responsible_user_id,
            text=payload["text"],
            due_at=datetime.fromisoformat(payload["due_at"]),
        ),
        idempotency_key=key,
    )
    return {"task_id": task.id}


def _sync_stay_fields(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """Balance, daily rate and paid-through date as they are now, not as they were when queued."""
    deal_id, fields = deal_fields_of("sync_stay_fields", payload)
    if fields:
        crm.update_deal_fields(deal_id, fields)
    return {"fields": sorted(fields)}


BATCHED_OPERATIONS = frozenset({"update_deal_fields", "sync_stay_fields", "set_responsible"})
"""Operations that only change a deal (fields, responsible): many of them go to the CRM as one batch
request (`deal_update_of`)."""


def deal_update_of(operation: str, payload: dict[str, Any]) -> DealUpdate:
    """The deal change a batched operation makes, read at send time (a stay's figures as they are now)."""
    if operation == "set_responsible":
        return DealUpdate(str(payload["deal_id"]), {}, responsible_user_id=str(payload["user_id"]))
    return DealUpdate(*deal_fields_of(operation, payload))


def deal_fields_of(operation: str, payload: dict[str, Any]) -> tuple[str, dict[str, FieldValue]]:
    """(deal id, fields) a batched operation writes, read at send time (a stay's figures as they are now)."""
    if operation == "update_deal_fields":
        return str(payload["deal_id"]), {k: _field_value(v) for k, v in payload["fields"].items()}
    if operation == "sync_stay_fields":
        from .. import runtime
        from ..ledger.stay_fields import stay_field_values

        with runtime.current().db.transaction() as session:
            return str(payload["deal_id"]), stay_field_values(session, int(payload["account_id"]))
    raise ValueError(f"{operation} is not a batched operation")


OPERATIONS: dict[str, Callable[[CrmClient, dict[str, Any], str], dict[str, Any]]] = {
    "add_note": _add_note,
    "update_deal_fields": _update_deal_fields,
    "move_deal": _move_deal,
    "create_task": _create_task,
    "set_responsible": _set_responsible,
    "notify_user": _notify_user,
    "task_for_responsible": _task_for_responsible,
    "sync_stay_fields": _sync_stay_fields,
}


LAZY_OPERATIONS: dict[str, str] = {
    "attach_invoice_document": "widget_server.jobs.invoices:attach_invoice_document",
    "notify_deal_responsible": "widget_server.jobs.invoices:notify_deal_responsible",
    "add_company_note": "widget_server.jobs.invoices:add_company_note",
    "distribution_hand_over": "widget_server.jobs.distribution:hand_over",
    "mis_mirror_appointment": "widget_server.jobs.mis.appointment_mirror:mis_mirror_appointment",
    "journey_send_message": "widget_server.jobs.journey:journey_send_message",
    "journey_create_deal": "widget_server.jobs.journey:journey_create_deal",
    "journey_add_tag": "widget_server.jobs.journey:journey_add_tag",
    # The same payload as the journey's patient messages: one implementation of send_message for both.
    "inpatient_send_message": "widget_server.jobs.journey:journey_send_message",
    "inpatient_representative_contact": "widget_server.jobs.inpatient:representative_contact",
}
"""Operations features add, by dotted path: their modules reach HTTP clients, and the domain's import graph
reaches this table through the outbox, so they are imported only when a job runs them."""


def is_operation(operation: str) -> bool:
    return operation in OPERATIONS or operation in LAZY_OPERATIONS


def resolve_operation(operation: str) -> Callable[[CrmClient, dict[str, Any], str], dict[str, Any]]:
    if operation in OPERATIONS:
        return OPERATIONS[operation]
    module, _, name = LAZY_OPERATIONS[operation].partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def run_operation(crm: CrmClient, operation: str, payload: dict[str, Any], key: str) -> dict[str, Any]:
    return resolve_operation(operation)(crm, payload, key)
