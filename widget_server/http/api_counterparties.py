"""Counterparties API: the payers, insurers, assistance companies and partner clinics a clinic settles
with; their requisites, their settlements and payments split across their invoices."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, request
from sqlalchemy import select

from ..clock import local_today
from ..invoices.counterparties import (
    CounterpartyInput,
    create_counterparty,
    find_counterparty,
    requisites_of,
    update_counterparty,
)
from ..invoices.mirror import queue_payment
from ..invoices.operations import Allocation, PaymentInput, pay
from ..invoices.settlements import counterparty_settlement
from ..models import Counterparty, CounterpartyRequisites, Invoice, Portal
from ..money import minor_to_decimal
from .auth import current_portal, current_principal, requires
from .body import load_body
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_invoices import (
    CounterpartyCreateSchema,
    CounterpartyPatchSchema,
    CounterpartyPaymentSchema,
    CounterpartySchema,
)

__all__ = ["counterparties_api", "invoice_brief", "key_for", "payment_document"]

counterparties_api = Blueprint("counterparties_api", __name__, url_prefix="/api/v1/counterparties")

ERRORS = (403, 404, 409)


def key_for(prefix: str) -> str:
    """The row's idempotency key: the client's Idempotency-Key when given, so a replay that slips past
    the HTTP layer still cannot write twice."""
    client_key = request.headers.get("Idempotency-Key")
    return f"{prefix}:{client_key}" if client_key else f"{prefix}:{uuid.uuid4().hex}"


def _portal() -> Portal:
    return db_session().merge(current_portal())


def _amount(minor: int, currency: str) -> str:
    return str(minor_to_decimal(minor, currency))


def counterparty_document(counterparty: Counterparty) -> dict[str, Any]:
    money = current_principal().has("finance")
    return CounterpartySchema().dump(
        {
            "id": counterparty.id,
            "kind": counterparty.kind,
            "name": counterparty.name,
            "crm_company_id": counterparty.crm_company_id,
            "language": counterparty.language,
            "currency": counterparty.currency,
            "payment_terms_days": counterparty.payment_terms_days,
            "requisites_version": counterparty.requisites_version,
            "requisites": requisites_of(db_session(), counterparty) if money else {},
        }
    )


def _input(body: dict[str, Any]) -> CounterpartyInput:
    requisites = body.get("requisites")
    return CounterpartyInput(
        kind=body.get("kind"),
        name=body.get("name"),
        crm_company_id=body.get("crm_company_id"),
        language=body.get("language"),
        currency=body.get("currency"),
        payment_terms_days=body.get("payment_terms_days"),
        requisites=dict(requisites) if requisites is not None else None,
    )


@counterparties_api.get("")
@api_doc(summary="Counterparties of the clinic", tags=["invoices"], response=CounterpartySchema(many=True))
@requires("staff")
def list_counterparties() -> Any:
    portal = current_portal()
    kind = request.args.get("kind")
    query = select(Counterparty).where(Counterparty.portal_id == portal.id).order_by(Counterparty.name)
    if kind:
        query = query.where(Counterparty.kind == kind)
    return [counterparty_document(c) for c in db_session().scalars(query)]


@counterparties_api.post("")
@api_doc(
    summary="Add a counterparty (requisites checked: INN/OGRN/BIK/account keys, IBAN, SWIFT)",
    tags=["invoices"],
    request=CounterpartyCreateSchema,
    response=CounterpartySchema,
    status=201,
    errors=ERRORS,
)
@requires("finance")
@mutation
def post_counterparty() -> Any:
    body = load_body(CounterpartyCreateSchema())
    counterparty = create_counterparty(db_session(), _portal(), _input(body), current_principal().actor)
    return counterparty_document(counterparty), 201


@counterparties_api.get("/<int:counterparty_id>")
@api_doc(
    summary="One counterparty (finance also sees every requisites version)",
    tags=["invoices"],
    response=CounterpartySchema,
    errors=(404,),
)
@requires("staff")
def get_counterparty(counterparty_id: int) -> Any:
    session = db_session()
    counterparty = find_counterparty(session, current_portal().id, counterparty_id)
    document = counterparty_document(counterparty)
    if current_principal().has("finance"):
        versions = session.scalars(
            select(CounterpartyRequisites)
            .where(CounterpartyRequisites.counterparty_id == counterparty.id)
            .order_by(CounterpartyRequisites.version)
        )
        document["requisites_history"] = [
            {
                "version": v.version,
                "data": v.data,
                "created_by": v.created_by,
                "created_at": v.created_at.isoformat(),
            }
            for v in versions
        ]
    return document


@counterparties_api.patch("/<int:counterparty_id>")
@api_doc(
    summary="Change a counterparty; changed requisites become a new version",
    tags=["invoices"],
    request=CounterpartyPatchSchema,
    response=CounterpartySchema,
    errors=ERRORS,
)
@requires("finance")
@mutation
def patch_counterparty(counterparty_id: int) -> Any:
    body = load_body(CounterpartyPatchSchema())
    counterparty = update_counterparty(
        db_session(), _portal(), counterparty_id, _input(body), current_principal().actor
    )
    return counterparty_document(counterparty)


def invoice_brief(invoice: Invoice) -> dict[str, Any]:
    ccy = invoice.invoice_currency
    return {
        "id": invoice.id,
        "number": invoice.number,
        "kind": invoice.kind,
        "deal_id": invoice.deal_id,
        "status": invoice.status,
        "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else None,
        "due_date": invoice.due_date.isoformat() if invoice.due_date else None,
        "currency": ccy,
        "total": _amount(invoice.total_minor, ccy),
        "credited": _amount(invoice.credited_minor, ccy),
        "paid": _amount(invoice.paid_minor, ccy),
        "outstanding": _amount(invoice.outstanding_minor, ccy),
    }


def payment_document(payment: Any, allocations: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    return {
        "id": payment.id,
        "direction": payment.direction,
        "sign": payment.sign,
        "payment_date": payment.payment_date.isoformat(),
        "amount": _amount(payment.amount_minor, payment.currency),
        "currency": payment.currency,
        "method": payment.method,
        "bank_reference": payment.bank_reference,
        "reverses_payment_id": payment.reverses_payment_id,
        "reason": payment.reason,
        "created_by": payment.created_by,
        "allocations": [
            {"invoice_id": invoice_id, "amount": _amount(minor, payment.currency)}
            for invoice_id, minor in (allocations or [])
        ],
    }


def _positions(positions: dict[str, Any]) -> dict[str, Any]:
    return {
        ccy: {
            "invoiced": _amount(p.invoiced_minor, ccy),
            "credited": _amount(p.credited_minor, ccy),
            "paid": _amount(p.paid_minor, ccy),
            "outstanding": _amount(p.outstanding_minor, ccy),
            "ageing": {bucket: _amount(minor, ccy) for bucket, minor in p.ageing.items()},
        }
        for ccy, p in sorted(positions.items())
    }


@counterparties_api.get("/<int:counterparty_id>/settlements")
@api_doc(
    summary="Receivable / payable per currency with ageing, invoices and payments",
    tags=["invoices"],
    errors=(404,),
)
@requires("finance")
def get_settlements(counterparty_id: int) -> Any:
    portal = current_portal()
    session = db_session()
    counterparty = find_counterparty(session, portal.id, counterparty_id)
    view = counterparty_settlement(session, portal.id, counterparty.id, local_today(portal.timezone))
    return {
        "counterparty_id": counterparty.id,
        "name": counterparty.name,
        "receivable": _positions(view.receivable),
        "payable": _positions(view.payable),
        "invoices": [invoice_brief(i) for i in view.invoices],
        "payments": [payment_document(p) for p in view.payments],
    }


@counterparties_api.post("/<int:counterparty_id>/payments")
@api_doc(
    summary="One bank payment split across this counterparty's invoices (allocations sum exactly)",
    tags=["invoices"],
    request=CounterpartyPaymentSchema,
    status=201,
    errors=ERRORS,
)
@requires("finance")
@mutation
def post_counterparty_payment(counterparty_id: int) -> Any:
    body = load_body(CounterpartyPaymentSchema())
    portal = _portal()
    session = db_session()
    payment, invoices = pay(
        session,
        portal,
        counterparty_id,
        PaymentInput(
            payment_date=body["payment_date"],
            amount=body["amount"],
            currency=body["currency"],
            method=body["method"],
            bank_reference=body.get("bank_reference"),
            allocations=[Allocation(a["invoice_id"], a["amount"]) for a in body["allocations"]],
        ),
        current_principal().actor,
        key_for("payment"),
        local_today(portal.timezone),
    )
    queue_payment(session, portal, payment, invoices)
    return {
        "payment": payment_document(payment),
        "invoices": [invoice_brief(i) for i in invoices],
    }, 201
