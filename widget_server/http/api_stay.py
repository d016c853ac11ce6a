"""The stay-ledger API of the deal card: admit, top up, charge, purchases, reversal, tariff, discharge,
forecast and statement. Money fields are shown to finance and admins only."""

from __future__ import annotations

import uuid
from datetime import date
from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import Row

from ..errors import ValidationFailed
from ..ledger import (
    Actor,
    Admission,
    Consent,
    WhatIf,
    admit,
    approve_purchase,
    change_tariff,
    charge,
    deposit,
    discharge,
    find_account,
    reject_purchase,
    request_purchase,
    reverse,
    stay_summary,
)
from ..ledger.accounts import tariff_for
from ..ledger.mirror import mirror_entries
from ..ledger.posting import Entry
from ..ledger.statement import statement_csv, statement_rows
from ..ledger.summary import StaySummary
from ..models import LedgerEntry, Portal, PurchaseRequest, StayAccount
from ..money import AmountError, format_minor, minor_to_decimal, parse_amount
from .auth import current_portal, current_portal_row, current_principal, requires
from .body import load_body, load_query
from .idempotency import local_mutation
from .lifecycle import db_session, json_ready_response
from .openapi import api_doc
from .schemas_ledger import (
    AdmitSchema,
    ApproveSchema,
    ChargeSchema,
    DepositSchema,
    DischargeSchema,
    ForecastQuerySchema,
    PurchaseSchema,
    RejectSchema,
    ReversalSchema,
    StatementQuerySchema,
    StaySummarySchema,
    TariffChangeSchema,
)

__all__ = ["stay_api"]

stay_api = Blueprint("stay_api", __name__, url_prefix="/api/v1/deals/<deal_id>/stay")

ERRORS = (403, 404, 409)


def _iso(value: date | None) -> str | None:
    """Dates and datetimes as ISO 8601, as `StaySummarySchema().dump` writes them: the documents below are
    JSON-ready as built (tests/ledger/test_fast_path.py checks they equal the schema's dump), with no walk
    over them afterwards. Flask's own encoder would write a date as an HTTP date."""
    return None if value is None else value.isoformat()


def _actor() -> Actor:
    principal = current_principal()
    return Actor(label=principal.actor, source=principal.via, roles=principal.roles)


def _key(prefix: str) -> str:
    """The entry's idempotency key: the client's Idempotency-Key when given, so a replay that slips past
    the HTTP layer (another process, an expired record) still cannot post twice."""
    client_key = request.headers.get("Idempotency-Key")
    return f"{prefix}:{client_key}" if client_key else f"{prefix}:{uuid.uuid4().hex}"


def _minor(raw: str | None, field: str, portal: Portal) -> int | None:
    if raw is None:
        return None
    try:
        return parse_amount(raw, portal.currency)
    except AmountError as exc:
        raise ValidationFailed.for_field(field, exc.reason) from None


def _portal() -> Portal:
    return db_session().merge(current_portal())


def _amount(minor: int, currency: str) -> str:
    return str(minor_to_decimal(minor, currency))


def entry_document(entry: Entry | Row[Any]) -> dict[str, Any]:
    """An entry, or a row with its columns (a summary's recent entries)."""
    return {
        "id": entry.id,
        "seq": entry.seq,
        "kind": entry.kind,
        "amount": _amount(entry.amount_minor, entry.currency),
        "direction": "credit" if entry.sign > 0 else "debit",
        "entry_date": _iso(entry.entry_date),
        "service_date": _iso(entry.service_date),
        "method": entry.method,
        "payer": entry.payer,
        "article_id": entry.article_id,
        "reason": entry.reason,
        "reverses_entry_id": entry.reverses_entry_id,
        "actor": entry.actor,
        "source": entry.source,
        "created_at": _iso(entry.created_at),
    }


@lru_cache(maxsize=4096)
def _stored_entry_document(row: Row[Any]) -> dict[str, Any]:
    return entry_document(row)


def _recent_entry_document(row: Row[Any]) -> dict[str, Any]:
    """An entry of a summary's recent list: entries never change, and a summary lists the same ten again
    and again (every charge answers with its account's last ten), so their documents are kept, keyed by
    the whole row (all its columns: an id SQLite hands out again after a rollback comes with other values).
    A copy: the cached document itself must never be changed. Only plain rows are kept: an ORM object
    hashes by identity, which a later object may reuse."""
    if not isinstance(row, tuple):
        return entry_document(row)
    return dict(_stored_entry_document(row))


def purchase_document(purchase: PurchaseRequest | Row[Any], currency: str) -> dict[str, Any]:
    """A purchase request, or a row with its columns (a summary's pending purchases)."""
    return {
        "id": purchase.id,
        "amount": _amount(purchase.amount_minor, currency),
        "description": purchase.description,
        "article_id": purchase.article_id,
        "status": purchase.status,
        "requested_by": purchase.requested_by,
        "requested_at": _iso(purchase.requested_at),
        "expires_at": _iso(purchase.expires_at),
        "consent_by": purchase.consent_by,
        "consent_channel": purchase.consent_channel,
        "consent_at": _iso(purchase.consent_at),
        "entry_id": purchase.entry_id,
    }


def summary_document(portal: Portal, summary: StaySummary) -> dict[str, Any]:
    account = summary.account
    money = current_principal().has("finance")
    forecast = summary.forecast
    document: dict[str, Any] = {
        "deal_id": account.deal_id,
        "status": account.status,
        "admission_date": _iso(account.admission_date),
        "discharge_date": _iso(account.discharge_date),
        "today": _iso(summary.today),
        "representative": {"name": account.representative_name, "phone": account.representative_phone}
        if account.representative_name
        else None,
        "forecast": {
            "unlimited": forecast.unlimited,
            "days_covered": forecast.days_covered,
            "paid_through": _iso(forecast.paid_through),
            "days_left": summary.days_left,
            "days_of_debt": forecast.days_of_debt,
        },
        "low_balance": summary.low_balance,
        "money_visible": money,
        "currency": account.currency,
    }
    if money:
        currency = account.currency
        document.update(
            {
                "balance": _amount(summary.balance_minor, currency),
                "balance_display": format_minor(summary.balance_minor, currency, portal.locale),
                "holds": _amount(summary.holds_minor, currency),
                "available": _amount(summary.available_minor, currency),
                "daily_rate": _amount(summary.daily_rate_minor, currency),
                "pending_purchases": [purchase_document(p, currency) for p in summary.pending_purchases],
                "recent_entries": [_recent_entry_document(e) for e in summary.recent_entries],
            }
        )
    return document


def _after(
    portal: Portal,
    account: StayAccount,
    entries: list[Entry],
    state: tuple[int, int, date | None] | None = None,
) -> StaySummary:
    session = db_session()
    summary = stay_summary(session, portal, account, state=state)
    mirror_entries(session, portal, summary, entries)
    return summary


@stay_api.post("")
@api_doc(
    summary="Admit: open the stay account",
    tags=["stay"],
    request=AdmitSchema,
    response=StaySummarySchema,
    status=201,
    errors=ERRORS,
)
@requires("staff")
@local_mutation
def admit_patient(deal_id: str) -> Any:
    body = load_body(AdmitSchema())
    portal = _portal()
    representative = body.get("representative") or {}
    opening = body.get("deposit")
    account = admit(
        db_session(),
        portal,
        Admission(
            deal_id=deal_id,
            admission_date=body["admission_date"],
            tariff_id=body["tariff_id"],
            representative_name=representative.get("name"),
            representative_phone=_phone(representative.get("phone")),
            deposit_minor=_minor(opening["amount"], "deposit.amount", portal) if opening else None,
            deposit_method=opening["method"] if opening else None,
            deposit_payer=opening.get("payer") if opening else None,
        ),
        _actor(),
        _key("admit"),
    )
    session = db_session()
    entries = list(session.query(LedgerEntry).filter(LedgerEntry.account_id == account.id))
    return summary_document(portal, _after(portal, account, entries)), 201


def _phone(raw: str | None) -> str | None:
    if not raw:
        return None
    import phonenumbers

    try:
        number = phonenumbers.parse(raw, "RU")
    except phonenumbers.NumberParseException:
        raise ValidationFailed.for_field("representative.phone", f"not a phone number: {raw!r}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed.for_field("representative.phone", f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@stay_api.get("")
@api_doc(summary="Stay summary with forecast", tags=["stay"], response=StaySummarySchema, errors=(404,))
@requires("staff")
def get_stay(deal_id: str) -> Any:
    portal = current_portal()
    account = find_account(db_session(), portal.id, deal_id)
    return summary_document(portal, stay_summary(db_session(), portal, account))


def _account_of(entry: Entry) -> StayAccount:
    account = getattr(entry, "posted_to", None) or db_session().get(StayAccount, entry.account_id)
    assert account is not None
    return account


def _entry_response(portal: Portal, account: StayAccount, entry: Entry) -> Response:
    # The entry is the request's last write: the state it was posted against, plus itself, is the state now.
    summary = _after(portal, account, [entry], state=getattr(entry, "state_after", None))
    return json_ready_response(
        {"entry": entry_document(entry), "stay": summary_document(portal, summary)}, 201
    )


_DEPOSIT = DepositSchema()


@stay_api.post("/deposits")
@api_doc(summary="Top up the account", tags=["stay"], request=DepositSchema, status=201, errors=ERRORS)
@requires("finance")
@local_mutation(body=_DEPOSIT)
def post_deposit(deal_id: str) -> Any:
    body = load_body(_DEPOSIT)
    portal = _portal()
    entry = deposit(
        db_session(),
        portal,
        deal_id,
        _minor(body["amount"], "amount", portal),
        body["method"],
        body.get("payer"),
        _actor(),
        _key("deposit"),
    )
    return _entry_response(portal, _account_of(entry), entry)


_CHARGE = ChargeSchema()
"""One instance for every charge: a Schema's construction deep-copies its fields (a tenth of a millisecond
on the busiest endpoint), and `load` keeps no state between calls."""


@stay_api.post("/charges")
@api_doc(
    summary="One-off charge with an expense article",
    tags=["stay"],
    request=ChargeSchema,
    status=201,
    errors=ERRORS,
)
@requires("finance")
@local_mutation(body=_CHARGE)
def post_charge(deal_id: str) -> Any:
    body = load_body(_CHARGE)
    # The busiest endpoint reads only a few of the portal's columns: no ORM Portal is loaded or merged.
    portal = current_portal_row()
    entry = charge(
        db_session(),
        portal,
        deal_id,
        _minor(body["amount"], "amount", portal),
        body["article_id"],
        body.get("reason"),
        _actor(),
        _key("charge"),
        override=body["override"],
    )
    return _entry_response(portal, _account_of(entry), entry)


@stay_api.post("/purchases")
@api_doc(
    summary="Request a purchase (hold above the threshold, charge below it)",
    tags=["stay"],
    request=PurchaseSchema,
    status=201,
    errors=ERRORS,
)
@requires("finance")
@local_mutation
def post_purchase(deal_id: str) -> Any:
    body = load_body(PurchaseSchema())
    portal = _portal()
    purchase, entry = request_purchase(
        db_session(),
        portal,
        deal_id,
        _minor(body["amount"], "amount", portal),
        body.get("article_id"),
        body["description"],
        _actor(),
        _key("purchase"),
        override=body["override"],
    )
    account = find_account(db_session(), portal.id, deal_id)
    summary = _after(portal, account, [entry] if entry else [])
    return {
        "purchase": purchase_document(purchase, account.currency) if purchase else None,
        "entry": entry_document(entry) if entry else None,
        "stay": summary_document(portal, summary),
    }, 201


@stay_api.post("/purchases/<int:purchase_id>/approve")
@api_doc(
    summary="Record the representative's consent and post the purchase",
    tags=["stay"],
    request=ApproveSchema,
    status=201,
    errors=ERRORS,
)
@requires("finance")
@local_mutation
def approve(deal_id: str, purchase_id: int) -> Any:
    consent = load_body(ApproveSchema())["consent"]
    portal = _portal()
    purchase, entry = approve_purchase(
        db_session(),
        portal,
        deal_id,
        purchase_id,
        Consent(given_by=consent["given_by"], channel=consent["channel"], given_at=consent["given_at"]),
        _actor(),
        _key("approve"),
    )
    account = find_account(db_session(), portal.id, deal_id)
    summary = _after(portal, account, [entry])
    return {
        "purchase": purchase_document(purchase, account.currency),
        "entry": entry_document(entry),
        "stay": summary_document(portal, summary),
    }, 201


@stay_api.post("/purchases/<int:purchase_id>/reject")
@api_doc(
    summary="The representative refused: void the hold", tags=["stay"], request=RejectSchema, errors=ERRORS
)
@requires("finance")
@local_mutation
def reject(deal_id: str, purchase_id: int) -> Any:
    body = load_body(RejectSchema())
    portal = _portal()
    purchase = reject_purchase(db_session(), portal, deal_id, purchase_id, body.get("note"), _actor())
    account = find_account(db_session(), portal.id, deal_id)
    return {
        "purchase": purchase_document(purchase, account.currency),
        "stay": summary_document(portal, stay_summary(db_session(), portal, account)),
    }


@stay_api.post("/entries/<int:entry_id>/reversal")
@api_doc(
    summary="Reverse one entry (admin)", tags=["stay"], request=ReversalSchema, status=201, errors=ERRORS
)
@requires("admin")
@local_mutation
def post_reversal(deal_id: str, entry_id: int) -> Any:
    body = load_body(ReversalSchema())
    portal = _portal()
    entry = reverse(db_session(), portal, deal_id, entry_id, body["reason"], _actor(), _key("reversal"))
    return _entry_response(portal, _account_of(entry), entry)


@stay_api.post("/tariff")
@api_doc(
    summary="Change the tariff from a date",
    tags=["stay"],
    request=TariffChangeSchema,
    response=StaySummarySchema,
    errors=ERRORS,
)
@requires("finance")
@local_mutation
def post_tariff(deal_id: str) -> Any:
    body = load_body(TariffChangeSchema())
    portal = _portal()
    change_tariff(db_session(), portal, deal_id, body["tariff_id"], body["effective_from"], _actor())
    account = find_account(db_session(), portal.id, deal_id)
    return summary_document(portal, _after(portal, account, []))


@stay_api.post("/discharge")
@api_doc(
    summary="Discharge: final charges, refund, close",
    tags=["stay"],
    request=DischargeSchema,
    response=StaySummarySchema,
    errors=ERRORS,
)
@requires("finance")
@local_mutation
def post_discharge(deal_id: str) -> Any:
    body = load_body(DischargeSchema())
    portal = _portal()
    session = db_session()
    account = find_account(session, portal.id, deal_id, include_closed=False)
    before = {e.id for e in session.query(LedgerEntry.id).filter(LedgerEntry.account_id == account.id)}
    account = discharge(
        session,
        portal,
        deal_id,
        body["discharge_date"],
        body.get("refund_method"),
        _actor(),
        _key("discharge"),
    )
    new = [
        e
        for e in session.query(LedgerEntry).filter(LedgerEntry.account_id == account.id)
        if e.id not in before
    ]
    return summary_document(portal, _after(portal, account, new))


@stay_api.get("/forecast")
@api_doc(
    summary="Forecast, optionally what-if a purchase or another tariff",
    tags=["stay"],
    query=ForecastQuerySchema,
    response=StaySummarySchema,
    errors=(404,),
)
@requires("staff")
def get_forecast(deal_id: str) -> Any:
    query = load_query(ForecastQuerySchema())
    portal = current_portal()
    session = db_session()
    account = find_account(session, portal.id, deal_id)
    what_if = WhatIf(
        purchase_minor=_minor(query.get("purchase"), "purchase", portal) or 0,
        tariff_rate_minor=tariff_for(session, portal, query["tariff_id"]).daily_rate_minor
        if "tariff_id" in query
        else None,
        tariff_from=query.get("tariff_from"),
    )
    return summary_document(portal, stay_summary(session, portal, account, what_if=what_if))


@stay_api.get("/statement")
@api_doc(
    summary="Statement with running balance (JSON)", tags=["stay"], query=StatementQuerySchema, errors=(404,)
)
@requires("finance")
def get_statement(deal_id: str) -> Any:
    _portal_row, account, rows = _statement(deal_id)
    return {
        "deal_id": deal_id,
        "currency": account.currency,
        "rows": [
            {
                "entry_id": r.entry_id,
                "seq": r.seq,
                "date": r.entry_date.isoformat(),
                "kind": r.kind,
                "description": r.description,
                "credit": _amount(r.credit_minor, account.currency),
                "debit": _amount(r.debit_minor, account.currency),
                "balance": _amount(r.balance_minor, account.currency),
                "actor": r.actor,
                "reverses_entry_id": r.reverses_entry_id,
            }
            for r in rows
        ],
    }


@stay_api.get("/statement.csv")
@api_doc(
    summary="Statement as CSV (Excel, Russian)", tags=["stay"], query=StatementQuerySchema, errors=(404,)
)
@requires("finance")
def get_statement_csv(deal_id: str) -> Response:
    _portal_row, account, rows = _statement(deal_id)
    response = Response(statement_csv(rows, account.currency), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="statement-deal-{deal_id}.csv"'
    return response


def _statement(deal_id: str) -> tuple[Portal, StayAccount, list]:
    query = load_query(StatementQuerySchema())
    kinds = {k for k in (query.get("kind") or "").split(",") if k} or None
    portal = current_portal()
    account = find_account(db_session(), portal.id, deal_id)
    return portal, account, statement_rows(db_session(), account, kinds)


@stay_api.get("/statement.pdf")
@api_doc(
    summary="Statement as PDF, in Russian, to hand to the relative",
    tags=["stay"],
    query=StatementQuerySchema,
    errors=(404,),
)
@requires("finance")
def get_statement_pdf(deal_id: str) -> Response:
    from ..ledger.statement_pdf import render_statement_pdf
    from ..models import utcnow

    portal, account, rows = _statement(deal_id)
    summary = stay_summary(db_session(), portal, account, recent=0)
    pdf = render_statement_pdf(portal, account, rows, summary, generated_at=utcnow())
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="statement-deal-{deal_id}.pdf"'
    return response
