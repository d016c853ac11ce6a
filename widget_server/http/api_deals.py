"""Deal reads through the portal's CRM, and deal notes mirrored to the CRM through the outbox."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date
from typing import Any

from flask import Blueprint, request

from .. import runtime
from ..outbox import enqueue_outbox
from ..registry import crm_for
from .auth import current_portal, current_principal, requires
from .body import load_body
from .crm_errors import crm_errors_as_api_errors
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas import DealSchema, NoteRequestSchema, OutboxJobSchema

__all__ = ["deals_api"]

deals_api = Blueprint("deals_api", __name__, url_prefix="/api/v1/deals")


def _jsonable(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


@deals_api.get("/<deal_id>")
@api_doc(summary="A deal as the CRM has it", tags=["deals"], response=DealSchema, errors=(404, 502, 503))
@requires("staff")
def get_deal(deal_id: str) -> Any:
    with crm_errors_as_api_errors(f"deal {deal_id}"):
        deal = crm_for(current_portal(), runtime.current()).get_deal(deal_id)
    document = dataclasses.asdict(deal)
    document["fields"] = {key: _jsonable(value) for key, value in deal.fields.items()}
    return DealSchema().dump(document)


@deals_api.post("/<deal_id>/notes")
@api_doc(
    summary="Add a note to the deal's feed (mirrored by the outbox)",
    tags=["deals"],
    request=NoteRequestSchema,
    response=OutboxJobSchema,
    status=202,
)
@requires("staff")
@mutation
def add_note(deal_id: str) -> Any:
    body = load_body(NoteRequestSchema())
    principal = current_principal()
    # The CRM-side key derives from the client's Idempotency-Key, so a replayed request and a retried
    # job both land on the same CRM note.
    client_key = request.headers.get("Idempotency-Key")
    key = f"note:{client_key}" if client_key else f"note:{uuid.uuid4().hex}"
    job = enqueue_outbox(
        db_session(),
        portal_id=principal.portal_id,
        operation="add_note",
        payload={"deal_id": deal_id, "text": body["text"]},
        idempotency_key=key,
        deal_id=deal_id,
        origin=principal.actor,
    )
    return OutboxJobSchema().dump(job), 202
