"""Invoice life cycle: draft → issued → partly_paid → paid, or cancelled by a credit note.

Every function runs inside the caller's transaction and raises before writing anything it refuses, so a
refusal leaves no row behind. Issued invoices are frozen: lines and totals are never edited again, and the
`snapshot` is what every rendering prints.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import (
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoicePayment,
    PaymentAllocation,
    Portal,
    utcnow,
)
from ..money import AmountError, minor_to_decimal, parse_amount
from .calc import EXEMPT_BASIS, compute, vat_rate_on
from .counterparties import check_currency, find_counterparty, requisites_of
from .errors import InvoiceConflict, InvoiceError, InvoiceNotFound
from .kinds import CREDIT_NOTE_SERIES, KINDS, InvoiceKind, get_kind
from .numbering import take_number
from .rates import Quote
from .requisites import missing_for_issue
from .words import amount_in_words

__all__ = [
    "Allocation",
    "DraftInput",
    "LineInput",
    "PaymentInput",
    "QuoteSource",
    "cancel_or_credit",
    "create_draft",
    "derive_status",
    "find_invoice",
    "issue",
    "pay",
    "reverse_payment",
    "update_draft",
]

QuoteSource = Callable[[date, str, str], Quote]
"""(day, source currency, target currency) → Quote; raises RateUnavailable."""

_QTY = re.compile(r"^\d{1,10}(\.\d+)?$")
PAYABLE_STATES = ("issued", "partly_paid")


@dataclass
class LineInput:
    name: str
    quantity: str
    unit_price: str
    code: str | None = None
    service_date: date | None = None
    vat_category: str = "exempt"


@dataclass
class DraftInput:
    kind: str | None = None
    counterparty_id: int | None = None
    invoice_currency: str | None = None
    price_currency: str | None = None
    issue_date: date | None = None
    due_date: date | None = None
    details: dict[str, Any] | None = None
    lines: list[LineInput] | None = None


def find_invoice(session: Session, portal_id: int, invoice_id: int, *, lock: bool = False) -> Invoice:
    query = select(Invoice).where(Invoice.id == invoice_id, Invoice.portal_id == portal_id)
    if lock:
        query = query.with_for_update()
    invoice = session.scalar(query)
    if invoice is None:
        raise InvoiceNotFound("invoice_id", f"no invoice {invoice_id} on this portal")
    return invoice


def _quantity(raw: object, field_name: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise InvoiceError(field_name, 'must be a decimal string like "1" or "2.5"')
    text = str(raw).strip()
    if text.startswith("-"):
        raise InvoiceError(field_name, "must be greater than zero")
    if not _QTY.match(text):
        raise InvoiceError(field_name, f"not a quantity: {raw!r}")
    if len(text.partition(".")[2]) > 3:
        raise InvoiceError(field_name, "at most 3 decimal places")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvoiceError(field_name, f"not a quantity: {raw!r}") from None
    if value <= 0:
        raise InvoiceError(field_name, "must be greater than zero")
    return value


def _lines(lines: list[LineInput], price_currency: str, portal_id: int) -> list[InvoiceLine]:
    built = []
    for index, line in enumerate(lines):
        prefix = f"lines[{index}]"
        if not line.name or not line.name.strip():
            raise InvoiceError(f"{prefix}.name", "required")
        if line.vat_category not in ("exempt", "taxed"):
            raise InvoiceError(f"{prefix}.vat_category", "must be exempt or taxed")
        quantity = _quantity(line.quantity, f"{prefix}.quantity")
        try:
            price = parse_amount(line.unit_price, price_currency)
        except AmountError as exc:
            raise InvoiceError(f"{prefix}.unit_price", exc.reason) from None
        built.append(
            InvoiceLine(
                portal_id=portal_id,
                position=index + 1,
                name=line.name.strip(),
                code=line.code,
                service_date=line.service_date,
                quantity=quantity,
                unit_price_minor=price,
                vat_category=line.vat_category,
            )
        )
    return built


def _check_kind(code: str | None, counterparty_kind: str) -> InvoiceKind:
    kind = get_kind(code or "")
    if kind is None:
        raise InvoiceError("kind", f"must be one of {', '.join(KINDS)}")
    if counterparty_kind not in kind.counterparty_kinds:
        raise InvoiceError(
            "counterparty_id",
            f"a {kind.code} invoice goes to a {' or '.join(kind.counterparty_kinds)},"
            f" not a {counterparty_kind}",
        )
    return kind


def _check_dates(issue_date: date | None, due_date: date | None, today: date) -> None:
    if issue_date is not None and issue_date > today:
        raise InvoiceError("issue_date", "must not be in the future")
    if issue_date is not None and due_date is not None and due_date < issue_date:
        raise InvoiceError("due_date", "must not be before the issue date")


def create_draft(
    session: Session, portal: Portal, deal_id: str, data: DraftInput, actor: str, key: str, today: date
) -> Invoice:
    existing = session.scalar(
        select(Invoice).where(Invoice.portal_id == portal.id, Invoice.idempotency_key == key)
    )
    if existing is not None:
        return existing
    if data.counterparty_id is None:
        raise InvoiceError("counterparty_id", "required")
    counterparty = find_counterparty(session, portal.id, data.counterparty_id)
    if counterparty.portal_id != portal.id:
        raise InvoiceNotFound("counterparty_id", "not found")
    kind = _check_kind(data.kind, counterparty.kind)
    invoice_currency = check_currency(data.invoice_currency or counterparty.currency, "invoice_currency")
    price_currency = check_currency(data.price_currency or invoice_currency, "price_currency")
    _check_dates(data.issue_date, data.due_date, today)
    lines = _lines(data.lines or [], price_currency, portal.id)
    invoice = Invoice(
        portal_id=portal.id,
        kind=kind.code,
        deal_id=deal_id,
        counterparty_id=counterparty.id,
        status="draft",
        issue_date=data.issue_date,
        due_date=data.due_date,
        price_currency=price_currency,
        invoice_currency=invoice_currency,
        details=dict(data.details or {}),
        idempotency_key=key,
        created_by=actor,
    )
    session.add(invoice)
    session.flush()
    for line in lines:
        line.invoice_id = invoice.id
    session.add_all(lines)
    session.flush()
    return invoice


def invoice_lines(session: Session, invoice_id: int) -> list[InvoiceLine]:
    return list(
        session.scalars(
            select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(InvoiceLine.position)
        )
    )


def update_draft(session: Session, portal: Portal, invoice_id: int, data: DraftInput, today: date) -> Invoice:
    invoice = find_invoice(session, portal.id, invoice_id, lock=True)
    if invoice.status != "draft":
        raise InvoiceConflict("status", f"an {invoice.status} invoice is never edited; issue a credit note")
    counterparty = find_counterparty(session, portal.id, data.counterparty_id or invoice.counterparty_id)
    kind = _check_kind(data.kind or invoice.kind, counterparty.kind)
    invoice_currency = check_currency(data.invoice_currency or invoice.invoice_currency, "invoice_currency")
    price_currency = check_currency(data.price_currency or invoice.price_currency, "price_currency")
    issue_date = data.issue_date if data.issue_date is not None else invoice.issue_date
    due_date = data.due_date if data.due_date is not None else invoice.due_date
    _check_dates(issue_date, due_date, today)
    new_lines = _lines(data.lines, price_currency, portal.id) if data.lines is not None else None
    rescaled: list[tuple[InvoiceLine, int]] = []
    if new_lines is None and price_currency != invoice.price_currency:
        # Prices are minor units of the old currency: the same amounts in the new one (JPY has no
        # decimals, KWD three), refused if they do not fit.
        for index, line in enumerate(invoice_lines(session, invoice.id)):
            amount = str(minor_to_decimal(line.unit_price_minor, invoice.price_currency).normalize())
            try:
                rescaled.append((line, parse_amount(f"{Decimal(amount):f}", price_currency)))
            except AmountError as exc:
                raise InvoiceError(f"lines[{index}].unit_price", exc.reason) from None
    invoice.kind, invoice.counterparty_id = kind.code, counterparty.id
    invoice.invoice_currency, invoice.price_currency = invoice_currency, price_currency
    invoice.issue_date, invoice.due_date = issue_date, due_date
    if data.details is not None:
        invoice.details = dict(data.details)
    for line, price in rescaled:
        line.unit_price_minor = price
    if new_lines is not None:
        for old in invoice_lines(session, invoice.id):
            session.delete(old)
        session.flush()
        for line in new_lines:
            line.invoice_id = invoice.id
        session.add_all(new_lines)
    session.flush()
    return invoice


def clinic_requisites(portal: Portal) -> dict[str, Any]:
    settings = (portal.settings or {}).get("invoices") or {}
    clinic = dict(settings.get("clinic") or {})
    clinic.setdefault("legal_name", portal.name)
    return clinic


def _invoice_settings(portal: Portal) -> dict[str, Any]:
    return (portal.settings or {}).get("invoices") or {}


def _money(minor: int, currency: str) -> str:
    return str(minor_to_decimal(minor, currency))


def issue(
    session: Session, portal: Portal, invoice_id: int, actor: str, today: date, quotes: QuoteSource
) -> Invoice:
    """Check completeness, price the lines, take a number and freeze the snapshot — all or nothing."""
    invoice = find_invoice(session, portal.id, invoice_id, lock=True)
    if invoice.status != "draft":
        raise InvoiceConflict("status", f"already {invoice.status}")
    kind = get_kind(invoice.kind)
    if kind is None:
        raise InvoiceError("kind", f"unknown kind {invoice.kind!r}")
    counterparty = find_counterparty(session, portal.id, invoice.counterparty_id)
    requisites = requisites_of(session, counterparty)
    missing = missing_for_issue(kind, requisites)
    if missing:
        # The requisite is named in the reason too: the panel shows it beside the counterparty picker.
        raise InvoiceError(
            f"counterparty.{missing}",
            f"the counterparty's {missing} is required to issue a {kind.code} invoice",
        )
    details = invoice.details or {}
    for name in kind.required_details:
        if not details.get(name):
            raise InvoiceError(f"details.{name}", f"required to issue a {kind.code} invoice")
    lines = invoice_lines(session, invoice.id)
    if not lines:
        raise InvoiceError("lines", "an invoice needs at least one line")
    issue_date = invoice.issue_date or today
    _check_dates(issue_date, invoice.due_date, today)
    due_date = invoice.due_date or issue_date + timedelta(days=counterparty.payment_terms_days)

    quote: Quote | None = None
    rate = Decimal(1)
    if invoice.price_currency != invoice.invoice_currency:
        quote = quotes(issue_date, invoice.price_currency, invoice.invoice_currency)
        rate = quote.rate
    settings = _invoice_settings(portal)
    vat_payer = bool(settings.get("vat_payer", True))
    vat_rate = vat_rate_on(issue_date, settings)
    totals = compute(
        [(Decimal(line.quantity), line.unit_price_minor, line.vat_category == "taxed") for line in lines],
        price_currency=invoice.price_currency,
        invoice_currency=invoice.invoice_currency,
        rate=rate,
        vat_rate=vat_rate,
        vat_mode=kind.vat_mode,
        vat_payer=vat_payer,
    )
    for line, amounts in zip(lines, totals.lines, strict=True):
        line.amount_minor = amounts.amount_minor
        line.converted_minor = amounts.converted_minor
        line.vat_minor = amounts.vat_minor

    seq, number = take_number(session, portal.id, kind.series, issue_date.year)
    invoice.series, invoice.year, invoice.seq, invoice.number = kind.series, issue_date.year, seq, number
    invoice.issue_date, invoice.due_date = issue_date, due_date
    invoice.rate = quote.rate if quote else None
    invoice.rate_date = quote.effective_date if quote else None
    invoice.price_total_minor = totals.price_total_minor
    invoice.total_minor = totals.total_minor
    invoice.vat_minor = totals.vat_minor
    invoice.status = "issued"
    invoice.issued_by, invoice.issued_at = actor, utcnow()
    language = counterparty.language
    ccy, pccy = invoice.invoice_currency, invoice.price_currency
    invoice.snapshot = {
        "number": number,
        "kind": kind.code,
        "title": kind.title_ru if language == "ru" else f"{kind.title_ru} / {kind.title_en}",
        "language": language,
        "deal_id": invoice.deal_id,
        "issue_date": issue_date.isoformat(),
        "due_date": due_date.isoformat(),
        "price_currency": pccy,
        "invoice_currency": ccy,
        "rate": str(quote.rate) if quote else None,
        "rate_date": quote.effective_date.isoformat() if quote else None,
        "rate_text": quote.printed() if quote else None,
        "vat_mode": kind.vat_mode,
        "vat_payer": vat_payer,
        "vat_rate": str(vat_rate),
        "vat_text": None if vat_payer else "НДС не облагается",
        "exempt_basis": EXEMPT_BASIS,
        "details": details,
        "clinic": clinic_requisites(portal),
        "counterparty": {
            "id": counterparty.id,
            "kind": counterparty.kind,
            "name": counterparty.name,
            "requisites_version": counterparty.requisites_version,
            "requisites": requisites,
        },
        "lines": [
            {
                "id": line.id,
                "position": line.position,
                "name": line.name,
                "code": line.code,
                "service_date": line.service_date.isoformat() if line.service_date else None,
                "quantity": str(Decimal(line.quantity).normalize()),
                "unit_price": _money(line.unit_price_minor, pccy),
                "amount": _money(line.amount_minor, pccy),
                "converted": _money(line.converted_minor, ccy),
                "vat_category": line.vat_category,
                "vat": _money(line.vat_minor, ccy),
            }
            for line in lines
        ],
        "price_total": _money(totals.price_total_minor, pccy),
        "net": _money(totals.net_minor, ccy),
        "vat": _money(totals.vat_minor, ccy),
        "total": _money(totals.total_minor, ccy),
        "total_in_words": amount_in_words(minor_to_decimal(totals.total_minor, ccy), ccy, language),
        "issued_by": actor,
    }
    session.flush()
    return invoice


def derive_status(invoice: Invoice) -> str:
    """Paid states follow from the sums; a cancelled invoice stays cancelled."""
    if invoice.status in ("draft", "cancelled"):
        return invoice.status
    if invoice.paid_minor <= 0:
        return "issued"
    return "paid" if invoice.paid_minor >= invoice.due_minor else "partly_paid"


def cancel_or_credit(
    session: Session,
    portal: Portal,
    invoice_id: int,
    reason: str,
    line_ids: list[int] | None,
    actor: str,
    key: str,
    today: date,
) -> tuple[Invoice, CreditNote | None]:
    """A draft is cancelled without a number. An issued invoice is cancelled in full (refused while
    payments stand) or by lines (an insurer refuses a service) by a credit note in its own series."""
    existing = session.scalar(
        select(CreditNote).where(CreditNote.portal_id == portal.id, CreditNote.idempotency_key == key)
    )
    if existing is not None:
        return find_invoice(session, portal.id, existing.invoice_id), existing
    if not reason or not reason.strip():
        raise InvoiceError("reason", "required")
    invoice = find_invoice(session, portal.id, invoice_id, lock=True)
    if invoice.status == "cancelled":
        raise InvoiceConflict("status", "already cancelled")
    if invoice.status == "draft":
        if line_ids:
            raise InvoiceError("line_ids", "a draft is edited, not credited by lines")
        invoice.status, invoice.cancelled_at = "cancelled", utcnow()
        session.flush()
        return invoice, None
    kind = get_kind(invoice.kind)
    assert kind is not None
    lines = {line.id: line for line in invoice_lines(session, invoice.id)}
    open_lines = [line for line in lines.values() if not line.credited]
    if line_ids:
        chosen = []
        for index, line_id in enumerate(line_ids):
            line = lines.get(line_id)
            if line is None:
                raise InvoiceError(f"line_ids[{index}]", f"line {line_id} is not on this invoice")
            if line.credited:
                raise InvoiceConflict(f"line_ids[{index}]", f"line {line_id} is already credited")
            chosen.append(line)
        if len({line.id for line in chosen}) != len(chosen):
            raise InvoiceError("line_ids", "a line is listed twice")
    else:
        chosen = open_lines
    full = len(chosen) == len(open_lines)
    on_top = kind.vat_mode == "on_top"
    amount = sum(line.converted_minor + (line.vat_minor if on_top else 0) for line in chosen)
    vat = sum(line.vat_minor for line in chosen)
    if full:
        amount = invoice.due_minor  # whatever is left, so a fully credited invoice owes exactly zero
        if invoice.paid_minor > 0:
            raise InvoiceConflict(
                "payments", "payments stand against this invoice: reverse them before cancelling it in full"
            )
    elif invoice.due_minor - amount < invoice.paid_minor:
        raise InvoiceConflict("line_ids", "crediting these lines would leave the invoice overpaid")
    seq, number = take_number(session, portal.id, CREDIT_NOTE_SERIES, today.year)
    note = CreditNote(
        portal_id=portal.id,
        invoice_id=invoice.id,
        series=CREDIT_NOTE_SERIES,
        year=today.year,
        seq=seq,
        number=number,
        full=full,
        issue_date=today,
        reason=reason.strip(),
        line_ids=[line.id for line in chosen],
        amount_minor=amount,
        vat_minor=vat,
        currency=invoice.invoice_currency,
        idempotency_key=key,
        created_by=actor,
    )
    session.add(note)
    for line in chosen:
        line.credited = True
    invoice.credited_minor += amount
    if full:
        invoice.status, invoice.cancelled_at = "cancelled", utcnow()
    else:
        invoice.status = derive_status(invoice)
    session.flush()
    return invoice, note


@dataclass
class Allocation:
    invoice_id: int
    amount: str


@dataclass
class PaymentInput:
    payment_date: date
    amount: str
    currency: str
    method: str
    bank_reference: str | None = None
    allocations: list[Allocation] = field(default_factory=list)


def pay(
    session: Session,
    portal: Portal,
    counterparty_id: int,
    data: PaymentInput,
    actor: str,
    key: str,
    today: date,
) -> tuple[InvoicePayment, list[Invoice]]:
    """One bank payment, split across invoices of one counterparty; the allocations sum exactly to it and
    none may exceed what the invoice still owes."""
    existing = session.scalar(
        select(InvoicePayment).where(
            InvoicePayment.portal_id == portal.id, InvoicePayment.idempotency_key == key
        )
    )
    if existing is not None:
        return existing, _allocated_invoices(session, existing)
    counterparty = find_counterparty(session, portal.id, counterparty_id)
    currency = check_currency(data.currency, "currency")
    if data.payment_date > today:
        raise InvoiceError("payment_date", "must not be in the future")
    try:
        total = parse_amount(data.amount, currency)
    except AmountError as exc:
        raise InvoiceError("amount", exc.reason) from None
    if not data.allocations:
        raise InvoiceError("allocations", "name at least one invoice")
    ids = [a.invoice_id for a in data.allocations]
    if len(set(ids)) != len(ids):
        raise InvoiceError("allocations", "an invoice is listed twice")
    # Locked in id order: two payments touching the same invoices cannot deadlock.
    locked = {
        inv.id: inv
        for inv in session.scalars(
            select(Invoice)
            .where(Invoice.portal_id == portal.id, Invoice.id.in_(ids))
            .order_by(Invoice.id)
            .with_for_update()
        )
    }
    directions = set()
    amounts = []
    for index, allocation in enumerate(data.allocations):
        prefix = f"allocations[{index}]"
        invoice = locked.get(allocation.invoice_id)
        if invoice is None:
            raise InvoiceNotFound(
                f"{prefix}.invoice_id", f"no invoice {allocation.invoice_id} on this portal"
            )
        if invoice.counterparty_id != counterparty.id:
            raise InvoiceError(f"{prefix}.invoice_id", "the invoice belongs to another counterparty")
        if invoice.status not in PAYABLE_STATES:
            raise InvoiceConflict(f"{prefix}.invoice_id", f"a {invoice.status} invoice takes no payment")
        if invoice.invoice_currency != currency:
            raise InvoiceError("currency", f"the invoice is in {invoice.invoice_currency}, not {currency}")
        try:
            amount = parse_amount(allocation.amount, currency)
        except AmountError as exc:
            raise InvoiceError(f"{prefix}.amount", exc.reason) from None
        if amount > invoice.outstanding_minor:
            raise InvoiceError(
                f"{prefix}.amount",
                f"more than the {_money(invoice.outstanding_minor, currency)} {currency} still owed:"
                " no overpayment",
            )
        kind = get_kind(invoice.kind)
        assert kind is not None
        directions.add(kind.direction)
        amounts.append((invoice, amount))
    if len(directions) > 1:
        raise InvoiceError("allocations", "one payment cannot both receive and pay out")
    if sum(a for _, a in amounts) != total:
        raise InvoiceError("allocations", "the allocations must add up exactly to the payment amount")
    payment = InvoicePayment(
        portal_id=portal.id,
        counterparty_id=counterparty.id,
        direction=directions.pop(),
        sign=1,
        payment_date=data.payment_date,
        amount_minor=total,
        currency=currency,
        method=data.method,
        bank_reference=data.bank_reference,
        idempotency_key=key,
        created_by=actor,
    )
    session.add(payment)
    session.flush()
    for invoice, amount in amounts:
        session.add(
            PaymentAllocation(
                portal_id=portal.id, payment_id=payment.id, invoice_id=invoice.id, amount_minor=amount
            )
        )
        invoice.paid_minor += amount
        invoice.status = derive_status(invoice)
    session.flush()
    return payment, [invoice for invoice, _ in amounts]


def _allocated_invoices(session: Session, payment: InvoicePayment) -> list[Invoice]:
    return list(
        session.scalars(
            select(Invoice)
            .join(PaymentAllocation, PaymentAllocation.invoice_id == Invoice.id)
            .where(PaymentAllocation.payment_id == payment.id)
            .order_by(Invoice.id)
        )
    )


def reverse_payment(
    session: Session,
    portal: Portal,
    payment_id: int,
    reason: str,
    actor: str,
    key: str,
    today: date,
    *,
    invoice_id: int | None = None,
) -> tuple[InvoicePayment, list[Invoice]]:
    """A compensating entry: the original stays, a sign -1 row with the same allocations undoes it."""
    existing = session.scalar(
        select(InvoicePayment).where(
            InvoicePayment.portal_id == portal.id, InvoicePayment.idempotency_key == key
        )
    )
    if existing is not None:
        return existing, _allocated_invoices(session, existing)
    if not reason or not reason.strip():
        raise InvoiceError("reason", "required")
    original = session.scalar(
        select(InvoicePayment)
        .where(InvoicePayment.id == payment_id, InvoicePayment.portal_id == portal.id)
        .with_for_update()
    )
    if original is None:
        raise InvoiceNotFound("payment_id", f"no payment {payment_id} on this portal")
    if original.sign < 0:
        raise InvoiceConflict("payment_id", "a reversal is not reversed; record a new payment")
    if session.scalar(select(InvoicePayment.id).where(InvoicePayment.reverses_payment_id == original.id)):
        raise InvoiceConflict("payment_id", "already reversed")
    allocations = list(
        session.scalars(select(PaymentAllocation).where(PaymentAllocation.payment_id == original.id))
    )
    if invoice_id is not None and invoice_id not in {a.invoice_id for a in allocations}:
        raise InvoiceNotFound("payment_id", f"payment {payment_id} is not allocated to invoice {invoice_id}")
    invoices = {
        inv.id: inv
        for inv in session.scalars(
            select(Invoice)
            .where(Invoice.id.in_([a.invoice_id for a in allocations]))
            .order_by(Invoice.id)
            .with_for_update()
        )
    }
    reversal = InvoicePayment(
        portal_id=portal.id,
        counterparty_id=original.counterparty_id,
        direction=original.direction,
        sign=-1,
        payment_date=today,
        amount_minor=original.amount_minor,
        currency=original.currency,
        method=original.method,
        bank_reference=original.bank_reference,
        reverses_payment_id=original.id,
        reason=reason.strip(),
        idempotency_key=key,
        created_by=actor,
    )
    session.add(reversal)
    session.flush()
    for allocation in allocations:
        session.add(
            PaymentAllocation(
                portal_id=portal.id,
                payment_id=reversal.id,
                invoice_id=allocation.invoice_id,
                amount_minor=allocation.amount_minor,
            )
        )
        invoice = invoices[allocation.invoice_id]
        invoice.paid_minor -= allocation.amount_minor
        invoice.status = derive_status(invoice)
    session.flush()
    return reversal, sorted(invoices.values(), key=lambda inv: inv.id)
