"""Invoices API: drafts, issue, credit notes, payments and reversals, PDFs and the document registry,
the deal's settlements and CBR rates. `finance`/`admin` write and see money, `admin` reverses payments,
`staff` sees statuses only."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response
from sqlalchemy import select

from .. import cbr, runtime
from ..clock import local_today
from ..db import mark_read_only
from ..invoices.counterparties import check_currency, find_counterparty
from ..invoices.documents import generate_document, read_document
from ..invoices.errors import InvoiceError, RateUnavailable
from ..invoices.mirror import queue_credit_note, queue_document, queue_issue, queue_payment
from ..invoices.operations import (
    Allocation,
    DraftInput,
    LineInput,
    PaymentInput,
    cancel_or_credit,
    create_draft,
    find_invoice,
    invoice_lines,
    issue,
    pay,
    reverse_payment,
    update_draft,
)
from ..invoices.rates import Quote, convert_rate, rate_set_for
from ..invoices.render import ensure_cyrillic_font
from ..invoices.settlements import deal_settlement
from ..models import CreditNote, Invoice, InvoiceDocument, InvoicePayment, PaymentAllocation, Portal
from ..money import minor_to_decimal
from .api_counterparties import invoice_brief, key_for, payment_document
from .auth import current_portal, current_principal, requires
from .body import load_body, load_query
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_invoices import (
    CreditNoteRequestSchema,
    InvoiceCreateSchema,
    InvoicePatchSchema,
    InvoicePaymentSchema,
    InvoiceSchema,
    PaymentReversalSchema,
    PdfQuerySchema,
    RateQuerySchema,
)

__all__ = ["deal_invoices_api", "invoices_api", "rates_api"]

invoices_api = Blueprint("invoices_api", __name__, url_prefix="/api/v1/invoices")
deal_invoices_api = Blueprint("deal_invoices_api", __name__, url_prefix="/api/v1/deals/<deal_id>")
rates_api = Blueprint("rates_api", __name__, url_prefix="/api/v1/rates")

ERRORS = (403, 404, 409)


@invoices_api.record_once
def _fonts_at_start_up(_state: Any) -> None:
    # Fail when the app is built, not at the first invoice: without a Cyrillic font every letter of
    # every PDF would print as a box.
    ensure_cyrillic_font()


def _portal() -> Portal:
    return db_session().merge(current_portal())


def _today(portal: Portal) -> date:
    return local_today(portal.timezone)


def _actor() -> str:
    return current_principal().actor


def _documents_root() -> Path:
    return Path(runtime.current().settings.instance_path) / "documents"


def _amount(minor: int, currency: str) -> str:
    return str(minor_to_decimal(minor, currency))


def invoice_document(invoice: Invoice) -> dict[str, Any]:
    """Money only for finance; staff sees what the invoice is and where it stands."""
    session = db_session()
    brief = {
        "id": invoice.id,
        "deal_id": invoice.deal_id,
        "kind": invoice.kind,
        "status": invoice.status,
        "number": invoice.number,
        "counterparty_id": invoice.counterparty_id,
        "issue_date": invoice.issue_date,
        "due_date": invoice.due_date,
        "price_currency": invoice.price_currency,
        "invoice_currency": invoice.invoice_currency,
    }
    if not current_principal().has("finance"):
        return InvoiceSchema(only=tuple(brief)).dump(brief)
    ccy, pccy = invoice.invoice_currency, invoice.price_currency
    snapshot = invoice.snapshot or {}
    lines = [
        {
            "id": line.id,
            "position": line.position,
            "name": line.name,
            "code": line.code,
            "service_date": line.service_date.isoformat() if line.service_date else None,
            "quantity": str(line.quantity),
            "unit_price": _amount(line.unit_price_minor, pccy),
            "vat_category": line.vat_category,
            "amount": _amount(line.amount_minor, pccy),
            "converted": _amount(line.converted_minor, ccy),
            "vat": _amount(line.vat_minor, ccy),
            "credited": line.credited,
        }
        for line in invoice_lines(session, invoice.id)
    ]
    notes = session.scalars(
        select(CreditNote).where(CreditNote.invoice_id == invoice.id).order_by(CreditNote.id)
    )
    payments = session.execute(
        select(InvoicePayment, PaymentAllocation.amount_minor)
        .join(PaymentAllocation, PaymentAllocation.payment_id == InvoicePayment.id)
        .where(PaymentAllocation.invoice_id == invoice.id)
        .order_by(InvoicePayment.id)
    ).all()
    documents = session.scalars(
        select(InvoiceDocument)
        .where(InvoiceDocument.invoice_id == invoice.id)
        .order_by(InvoiceDocument.version)
    )
    document = {
        **brief,
        "total": _amount(invoice.total_minor, ccy),
        "vat": _amount(invoice.vat_minor, ccy),
        "credited": _amount(invoice.credited_minor, ccy),
        "paid": _amount(invoice.paid_minor, ccy),
        "outstanding": _amount(invoice.outstanding_minor, ccy),
        "rate": snapshot.get("rate"),
        "rate_date": invoice.rate_date,
        "rate_text": snapshot.get("rate_text"),
        "total_in_words": snapshot.get("total_in_words"),
        "details": invoice.details or {},
        "lines": lines,
        "credit_notes": [
            {
                "id": n.id,
                "number": n.number,
                "full": n.full,
                "issue_date": n.issue_date.isoformat(),
                "reason": n.reason,
                "line_ids": n.line_ids,
                "amount": _amount(n.amount_minor, n.currency),
            }
            for n in notes
        ],
        "payments": [payment_document(p, [(invoice.id, minor)]) for p, minor in payments],
        "documents": [_document_row(d) for d in documents],
    }
    return InvoiceSchema().dump(document)


def _document_row(document: InvoiceDocument) -> dict[str, Any]:
    return {
        "id": document.id,
        "invoice_id": document.invoice_id,
        "deal_id": document.deal_id,
        "version": document.version,
        "file_name": document.file_name,
        "template_version": document.template_version,
        "sha256": document.sha256,
        "size": document.size,
        "author": document.author,
        "created_at": document.created_at.isoformat(),
        "url": f"/api/v1/invoices/{document.invoice_id}.pdf?version={document.version}",
    }


def _draft_input(body: dict[str, Any]) -> DraftInput:
    lines = body.get("lines")
    return DraftInput(
        kind=body.get("kind"),
        counterparty_id=body.get("counterparty_id"),
        invoice_currency=body.get("invoice_currency"),
        price_currency=body.get("price_currency"),
        issue_date=body.get("issue_date"),
        due_date=body.get("due_date"),
        details=body.get("details"),
        lines=[
            LineInput(
                name=line["name"],
                quantity=line["quantity"],
                unit_price=line["unit_price"],
                code=line.get("code"),
                service_date=line.get("service_date"),
                vat_category=line.get("vat_category", "exempt"),
            )
            for line in lines
        ]
        if lines is not None
        else None,
    )


def _prefetch_quote(day: date, source: str, target: str, today: date) -> Quote | None:
    """The rate, before the invoice is touched. A set missing from the shared cache is fetched and cached
    in this request's own transaction: `mutation` has already opened it to claim the Idempotency-Key, and
    on SQLite a second writing connection would wait on that lock until it timed out."""
    if source == target:
        return None
    fetched = rate_set_for(db_session(), day, today, cbr.fetch_daily)
    return Quote(convert_rate(fetched, source, target), fetched.effective_date, source, target)


def _quotes(prefetched: Quote | None):  # type: ignore[no-untyped-def]
    def resolve(day: date, source: str, target: str) -> Quote:
        if prefetched is None or (prefetched.source, prefetched.target) != (source, target):
            raise RateUnavailable(f"no {source}/{target} rate prepared for {day.isoformat()}")
        return prefetched

    return resolve


def _issue_now(session: Any, portal: Portal, invoice_id: int, quote: Quote | None) -> Invoice:
    invoice = issue(session, portal, invoice_id, _actor(), _today(portal), _quotes(quote))
    queue_issue(session, portal, invoice)
    queue_document(session, portal, generate_document(session, portal, invoice, _actor(), _documents_root()))
    return invoice


def _draft_facts(portal: Portal, invoice_id: int) -> tuple[date, str, str] | None:
    with runtime.current().db.transaction() as session:
        mark_read_only(session)
        invoice = find_invoice(session, portal.id, invoice_id)
        if invoice.status != "draft":
            return None
        return invoice.issue_date or _today(portal), invoice.price_currency, invoice.invoice_currency


@deal_invoices_api.get("/invoices")
@api_doc(
    summary="The deal's invoices (money for finance only)",
    tags=["invoices"],
    response=InvoiceSchema(many=True),
)
@requires("staff")
def list_deal_invoices(deal_id: str) -> Any:
    portal = current_portal()
    invoices = db_session().scalars(
        select(Invoice).where(Invoice.portal_id == portal.id, Invoice.deal_id == deal_id).order_by(Invoice.id)
    )
    return [invoice_document(i) for i in invoices]


@deal_invoices_api.post("/invoices")
@api_doc(
    summary="Create a draft invoice for the deal (`issue: true` issues it at once)",
    tags=["invoices"],
    request=InvoiceCreateSchema,
    response=InvoiceSchema,
    status=201,
    errors=ERRORS,
)
@requires("finance")
@mutation
def post_invoice(deal_id: str) -> Any:
    body = load_body(InvoiceCreateSchema())
    portal = current_portal()
    today = _today(portal)
    quote = None
    if body["issue"]:
        with runtime.current().db.transaction() as read:
            mark_read_only(read)
            counterparty = find_counterparty(read, portal.id, body["counterparty_id"])
            target = check_currency(body.get("invoice_currency") or counterparty.currency, "invoice_currency")
            source = check_currency(body.get("price_currency") or target, "price_currency")
        day = body.get("issue_date") or today
        if day <= today:
            quote = _prefetch_quote(day, source, target, today)
    session = db_session()
    portal = _portal()
    invoice = create_draft(session, portal, deal_id, _draft_input(body), _actor(), key_for("invoice"), today)
    if body["issue"] and invoice.status == "draft":
        invoice = _issue_now(session, portal, invoice.id, quote)
    return invoice_document(invoice), 201


@deal_invoices_api.get("/documents")
@api_doc(summary="The deal's document folder: every version of every file", tags=["invoices"])
@requires("staff")
def list_deal_documents(deal_id: str) -> Any:
    portal = current_portal()
    documents = db_session().scalars(
        select(InvoiceDocument)
        .where(InvoiceDocument.portal_id == portal.id, InvoiceDocument.deal_id == deal_id)
        .order_by(InvoiceDocument.invoice_id, InvoiceDocument.version)
    )
    return [_document_row(d) for d in documents]


@deal_invoices_api.get("/settlements")
@api_doc(
    summary="What the patient, insurer and assistance company owe; what we owe partner clinics",
    tags=["invoices"],
)
@requires("finance")
def get_deal_settlements(deal_id: str) -> Any:
    portal = current_portal()
    view = deal_settlement(db_session(), portal.id, deal_id)
    return {
        "deal_id": deal_id,
        "by_kind": {
            kind: {
                ccy: {
                    "invoiced": _amount(p.invoiced_minor, ccy),
                    "credited": _amount(p.credited_minor, ccy),
                    "paid": _amount(p.paid_minor, ccy),
                    "outstanding": _amount(p.outstanding_minor, ccy),
                }
                for ccy, p in sorted(by_ccy.items())
            }
            for kind, by_ccy in sorted(view.items())
        },
    }


@invoices_api.get("/<int:invoice_id>")
@api_doc(summary="One invoice", tags=["invoices"], response=InvoiceSchema, errors=(404,))
@requires("staff")
def get_invoice(invoice_id: int) -> Any:
    return invoice_document(find_invoice(db_session(), current_portal().id, invoice_id))


@invoices_api.patch("/<int:invoice_id>")
@api_doc(
    summary="Edit a draft (an issued invoice is never edited)",
    tags=["invoices"],
    request=InvoicePatchSchema,
    response=InvoiceSchema,
    errors=ERRORS,
)
@requires("finance")
@mutation
def patch_invoice(invoice_id: int) -> Any:
    body = load_body(InvoicePatchSchema())
    portal = _portal()
    invoice = update_draft(db_session(), portal, invoice_id, _draft_input(body), _today(portal))
    return invoice_document(invoice)


@invoices_api.post("/<int:invoice_id>/issue")
@api_doc(
    summary="Issue: number, CBR rate, frozen snapshot, PDF v1, CRM note",
    tags=["invoices"],
    response=InvoiceSchema,
    errors=ERRORS,
)
@requires("finance")
@mutation
def post_issue(invoice_id: int) -> Any:
    portal = current_portal()
    facts = _draft_facts(portal, invoice_id)
    quote = None
    if facts is not None and facts[0] <= _today(portal):
        quote = _prefetch_quote(facts[0], facts[1], facts[2], _today(portal))
    session = db_session()
    invoice = _issue_now(session, _portal(), invoice_id, quote)
    return invoice_document(invoice)


@invoices_api.post("/<int:invoice_id>/credit-notes")
@api_doc(
    summary="Cancel: a draft without a number; issued in full (409 while payments stand) or by lines",
    tags=["invoices"],
    request=CreditNoteRequestSchema,
    response=InvoiceSchema,
    status=201,
    errors=ERRORS,
)
@requires("finance")
@mutation
def post_credit_note(invoice_id: int) -> Any:
    body = load_body(CreditNoteRequestSchema())
    portal = _portal()
    session = db_session()
    invoice, note = cancel_or_credit(
        session,
        portal,
        invoice_id,
        body["reason"],
        body.get("line_ids"),
        _actor(),
        key_for("credit_note"),
        _today(portal),
    )
    if note is not None:
        queue_credit_note(session, portal, note, invoice)
    return invoice_document(invoice), 201


@invoices_api.post("/<int:invoice_id>/documents")
@api_doc(
    summary="Regenerate the PDF from the frozen snapshot as the next version",
    tags=["invoices"],
    status=201,
    errors=ERRORS,
)
@requires("finance")
@mutation
def post_document(invoice_id: int) -> Any:
    portal = _portal()
    session = db_session()
    invoice = find_invoice(session, portal.id, invoice_id, lock=True)
    document = generate_document(session, portal, invoice, _actor(), _documents_root())
    queue_document(session, portal, document)
    return _document_row(document), 201


@invoices_api.post("/<int:invoice_id>/payments")
@api_doc(
    summary="Record a payment of this invoice (in its currency, no overpayment)",
    tags=["invoices"],
    request=InvoicePaymentSchema,
    status=201,
    errors=ERRORS,
)
@requires("finance")
@mutation
def post_invoice_payment(invoice_id: int) -> Any:
    body = load_body(InvoicePaymentSchema())
    portal = _portal()
    session = db_session()
    invoice = find_invoice(session, portal.id, invoice_id)
    try:
        payment, invoices = pay(
            session,
            portal,
            invoice.counterparty_id,
            PaymentInput(
                payment_date=body["payment_date"],
                amount=body["amount"],
                currency=body.get("currency") or invoice.invoice_currency,
                method=body["method"],
                bank_reference=body.get("bank_reference"),
                allocations=[Allocation(invoice.id, body["amount"])],
            ),
            _actor(),
            key_for("payment"),
            _today(portal),
        )
    except InvoiceError as error:
        # One invoice, one implicit allocation: name the field the client sent.
        if error.field.startswith("allocations[0]."):
            raise type(error)(error.field.removeprefix("allocations[0]."), error.reason) from None
        raise
    queue_payment(session, portal, payment, invoices)
    return {"payment": payment_document(payment), "invoice": invoice_document(invoices[0])}, 201


@invoices_api.post("/<int:invoice_id>/payments/<int:payment_id>/reversal")
@api_doc(
    summary="Reverse a payment by a compensating entry (admin)",
    tags=["invoices"],
    request=PaymentReversalSchema,
    status=201,
    errors=ERRORS,
)
@requires("admin")
@mutation
def post_payment_reversal(invoice_id: int, payment_id: int) -> Any:
    body = load_body(PaymentReversalSchema())
    portal = _portal()
    session = db_session()
    find_invoice(session, portal.id, invoice_id)
    reversal, invoices = reverse_payment(
        session,
        portal,
        payment_id,
        body["reason"],
        _actor(),
        key_for("reversal"),
        _today(portal),
        invoice_id=invoice_id,
    )
    queue_payment(session, portal, reversal, invoices)
    return {"payment": payment_document(reversal), "invoices": [invoice_brief(i) for i in invoices]}, 201


@invoices_api.get("/<int:invoice_id>.pdf")
@api_doc(
    summary="The invoice PDF, latest or ?version=N",
    tags=["invoices"],
    query=PdfQuerySchema,
    errors=(404, 409),
)
@requires("staff")
def get_pdf(invoice_id: int) -> Response:
    query = load_query(PdfQuerySchema())
    portal = current_portal()
    document, content = read_document(
        db_session(), portal.id, invoice_id, query.get("version"), _documents_root()
    )
    response = Response(content, mimetype="application/pdf")
    response.headers["Content-Disposition"] = _disposition(document.file_name)
    response.headers["X-Document-Version"] = str(document.version)
    response.headers["X-Document-SHA256"] = document.sha256
    response.headers["X-Template-Version"] = document.template_version
    return response


def _disposition(file_name: str) -> str:
    """HTTP headers are latin-1: the Cyrillic number goes in RFC 5987's filename*, with a transliterated
    ASCII filename for clients that ignore it."""
    fallback = file_name.translate(_TRANSLIT).encode("ascii", "replace").decode().replace("?", "_")
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name)}"


_RU = "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
_LATIN = "A B V G D E E Zh Z I Y K L M N O P R S T U F Kh Ts Ch Sh Shch _ Y _ E Yu Ya".split()
_PAIRS = list(zip(_RU, _LATIN, strict=True))
_TRANSLIT = str.maketrans({**dict(_PAIRS), **{ru.lower(): lat.lower() for ru, lat in _PAIRS}})


@rates_api.get("")
@api_doc(
    summary="CBR rate for a date (cached for all portals)",
    tags=["invoices"],
    query=RateQuerySchema,
    errors=(422,),
)
@requires("staff")
def get_rate() -> Any:
    query = load_query(RateQuerySchema())
    portal = current_portal()
    source = check_currency(query["currency"], "currency")
    target = check_currency(query["to"], "to")
    today = _today(portal)
    quote = cbr.quote_for(runtime.current().db, query["date"], source, target, today)
    return {
        "date": query["date"].isoformat(),
        "effective_date": quote.effective_date.isoformat(),
        "currency": source,
        "to": target,
        "rate": str(quote.rate),
        "text": quote.printed(),
    }
