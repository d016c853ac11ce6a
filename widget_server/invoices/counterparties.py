"""Counterparties (контрагенты): who pays us or whom we pay, with versioned requisites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from babel.numbers import list_currencies
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import COUNTERPARTY_KINDS, Counterparty, CounterpartyRequisites, Portal, utcnow
from .errors import InvoiceError, InvoiceNotFound
from .requisites import validate_requisites

__all__ = [
    "CounterpartyInput",
    "check_currency",
    "create_counterparty",
    "find_counterparty",
    "requisites_of",
    "update_counterparty",
]

_CURRENCIES = frozenset(list_currencies())


def check_currency(code: object, field: str) -> str:
    if not isinstance(code, str) or code.upper() not in _CURRENCIES or len(code) != 3:
        raise InvoiceError(field, f"unknown currency {code!r}: use an ISO 4217 code such as RUB, EUR, USD")
    return code.upper()


@dataclass
class CounterpartyInput:
    kind: str | None = None
    name: str | None = None
    crm_company_id: str | None = None
    language: str | None = None
    currency: str | None = None
    payment_terms_days: int | None = None
    requisites: dict[str, Any] | None = None


def find_counterparty(
    session: Session, portal_id: int, counterparty_id: int, *, lock: bool = False
) -> Counterparty:
    query = select(Counterparty).where(
        Counterparty.id == counterparty_id, Counterparty.portal_id == portal_id
    )
    if lock:
        query = query.with_for_update()
    counterparty = session.scalar(query)
    if counterparty is None:
        raise InvoiceNotFound("counterparty_id", f"no counterparty {counterparty_id} on this portal")
    return counterparty


def requisites_of(session: Session, counterparty: Counterparty) -> dict[str, Any]:
    if counterparty.requisites_version == 0:
        return {}
    row = session.scalar(
        select(CounterpartyRequisites).where(
            CounterpartyRequisites.counterparty_id == counterparty.id,
            CounterpartyRequisites.version == counterparty.requisites_version,
        )
    )
    return dict(row.data) if row is not None else {}


def _add_version(session: Session, counterparty: Counterparty, data: dict[str, Any], actor: str) -> None:
    counterparty.requisites_version += 1
    session.add(
        CounterpartyRequisites(
            portal_id=counterparty.portal_id,
            counterparty_id=counterparty.id,
            version=counterparty.requisites_version,
            data=data,
            created_by=actor,
        )
    )


def create_counterparty(
    session: Session, portal: Portal, data: CounterpartyInput, actor: str
) -> Counterparty:
    if data.kind not in COUNTERPARTY_KINDS:
        raise InvoiceError("kind", f"must be one of {', '.join(COUNTERPARTY_KINDS)}")
    if not data.name or not data.name.strip():
        raise InvoiceError("name", "required")
    requisites = validate_requisites(data.requisites or {})
    counterparty = Counterparty(
        portal_id=portal.id,
        kind=data.kind,
        name=data.name.strip(),
        crm_company_id=data.crm_company_id,
        language=data.language or "ru",
        currency=check_currency(data.currency or portal.currency, "currency"),
        payment_terms_days=30 if data.payment_terms_days is None else data.payment_terms_days,
        requisites_version=0,
        created_by=actor,
    )
    session.add(counterparty)
    session.flush()
    if requisites:
        _add_version(session, counterparty, requisites, actor)
    session.flush()
    return counterparty


def update_counterparty(
    session: Session, portal: Portal, counterparty_id: int, data: CounterpartyInput, actor: str
) -> Counterparty:
    """Plain fields change in place; requisites never do: a change adds a version, so an issued invoice
    keeps printing the requisites it froze."""
    counterparty = find_counterparty(session, portal.id, counterparty_id, lock=True)
    if data.kind is not None:
        if data.kind not in COUNTERPARTY_KINDS:
            raise InvoiceError("kind", f"must be one of {', '.join(COUNTERPARTY_KINDS)}")
        counterparty.kind = data.kind
    if data.name is not None:
        if not data.name.strip():
            raise InvoiceError("name", "must not be empty")
        counterparty.name = data.name.strip()
    if data.crm_company_id is not None:
        counterparty.crm_company_id = data.crm_company_id or None
    if data.language is not None:
        counterparty.language = data.language
    if data.currency is not None:
        counterparty.currency = check_currency(data.currency, "currency")
    if data.payment_terms_days is not None:
        counterparty.payment_terms_days = data.payment_terms_days
    if data.requisites is not None:
        merged = {**requisites_of(session, counterparty), **data.requisites}
        requisites = validate_requisites({k: v for k, v in merged.items() if v not in (None, "")})
        if requisites != requisites_of(session, counterparty):
            _add_version(session, counterparty, requisites, actor)
    counterparty.updated_at = utcnow()
    session.flush()
    return counterparty
