"""The rate directory the head edits: per operator, from a date, hourly and overtime rates and the bonuses
per converted primary patient and per waiting-list visit. Amounts are decimal strings ("250.00"): a JSON
number may already have passed through a float on its way in, so it is refused like a negative amount."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import DomainError
from ..models import OVERTIME_BASES, PayrollRate, Portal, PortalUser
from ..models.payroll import PayrollSchedule
from ..money import AmountError, minor_to_decimal, parse_amount

__all__ = [
    "AMOUNT_FIELDS",
    "PayrollInvalid",
    "RateInput",
    "RatePeriod",
    "dated_entries",
    "dated_row",
    "head_user_id",
    "rate_periods",
    "rates_in_effect",
    "save_rates",
]

AMOUNT_FIELDS = ("hourly_rate", "overtime_rate", "primary_bonus", "waiting_list_bonus")


class PayrollInvalid(DomainError):
    code = "validation_failed"


@dataclass(frozen=True)
class RateInput:
    user_id: int
    effective_from: date
    amounts: Mapping[str, object]
    overtime_basis: str = "month"
    mis_names: tuple[str, ...] = ()


def _amount(raw: object, field: str, currency: str) -> Decimal:
    try:
        return minor_to_decimal(parse_amount(raw, currency, allow_zero=True), currency)
    except AmountError as exc:
        negative = isinstance(raw, str) and raw.strip().startswith("-")
        reason = "must not be negative" if negative else exc.reason
        raise PayrollInvalid(field, reason) from None


class _Dated(Protocol):
    @property
    def user_id(self) -> int: ...
    @property
    def effective_from(self) -> date: ...


_Entry = TypeVar("_Entry", bound=_Dated)
_Row = TypeVar("_Row", PayrollRate, PayrollSchedule)


def dated_entries(
    session: Session, portal: Portal, entries: Iterable[_Entry], prefix: str
) -> Iterator[tuple[str, _Entry]]:
    """Each entry of an effective-dated directory with its field prefix ("rates[2]"), once its user is the
    portal's and no earlier entry of the batch has the same user and date."""
    users = set(session.scalars(select(PortalUser.id).where(PortalUser.portal_id == portal.id)))
    seen: set[tuple[int, date]] = set()
    for index, entry in enumerate(entries):
        where = f"{prefix}[{index}]"
        if entry.user_id not in users:
            raise PayrollInvalid(f"{where}.user_id", f"no user {entry.user_id} in this portal")
        if (entry.user_id, entry.effective_from) in seen:
            raise PayrollInvalid(f"{where}.effective_from", "a second entry for the same user and date")
        seen.add((entry.user_id, entry.effective_from))
        yield where, entry


def dated_row(session: Session, model: type[_Row], portal_id: int, entry: _Dated) -> _Row:
    """The operator's row for that date, or a new one: a directory is upserted by (user, effective_from)."""
    row = session.scalar(
        select(model).where(
            model.portal_id == portal_id,
            model.user_id == entry.user_id,
            model.effective_from == entry.effective_from,
        )
    )
    if row is None:
        row = model(portal_id=portal_id, user_id=entry.user_id, effective_from=entry.effective_from)
        session.add(row)
    return row


def save_rates(
    session: Session, portal: Portal, entries: Iterable[RateInput], *, actor: str, prefix: str = "rates"
) -> list[PayrollRate]:
    """Validate every entry first (the first bad one names its field, nothing is written), then upsert by
    (operator, effective_from): a rate for a date that already has one replaces it."""
    clean: list[tuple[RateInput, dict[str, Decimal]]] = []
    for where, entry in dated_entries(session, portal, list(entries), prefix):
        if entry.overtime_basis not in OVERTIME_BASES:
            raise PayrollInvalid(f"{where}.overtime_basis", f"must be one of {', '.join(OVERTIME_BASES)}")
        amounts = {
            name: _amount(entry.amounts.get(name), f"{where}.{name}", portal.currency)
            for name in AMOUNT_FIELDS
        }
        clean.append((entry, amounts))
    saved: list[PayrollRate] = []
    for entry, amounts in clean:
        row = dated_row(session, PayrollRate, portal.id, entry)
        for name, value in amounts.items():
            setattr(row, name, value)
        row.overtime_basis = entry.overtime_basis
        row.mis_names = list(entry.mis_names)
        row.created_by = actor
        saved.append(row)
    session.flush()
    return saved


def rates_in_effect(session: Session, portal_id: int, on: date) -> dict[int, PayrollRate]:
    """Operator → the rate in effect on `on` (the latest effective_from not after it)."""
    found: dict[int, PayrollRate] = {}
    for row in session.scalars(
        select(PayrollRate)
        .where(PayrollRate.portal_id == portal_id, PayrollRate.effective_from <= on)
        .order_by(PayrollRate.user_id, PayrollRate.effective_from)
    ):
        found[row.user_id] = row
    return found


@dataclass(frozen=True)
class RatePeriod:
    """The local days first…last of a month paid at one directory row."""

    rate: PayrollRate
    first: date
    last: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last


def rate_periods(session: Session, portal_id: int, first: date, last: date) -> dict[int, list[RatePeriod]]:
    """Operator → the rows in force on the days first…last, each clipped to the days it covers. Days before
    an operator's first row are in no period: nobody agreed a rate for them, so they pay nothing."""
    rows: dict[int, list[PayrollRate]] = {}
    for row in session.scalars(
        select(PayrollRate)
        .where(PayrollRate.portal_id == portal_id, PayrollRate.effective_from <= last)
        .order_by(PayrollRate.user_id, PayrollRate.effective_from)
    ):
        rows.setdefault(row.user_id, []).append(row)
    found: dict[int, list[RatePeriod]] = {}
    for user_id, history in rows.items():
        for row, following in zip(history, [*history[1:], None], strict=True):
            until = last if following is None else min(last, following.effective_from - timedelta(days=1))
            since = max(first, row.effective_from)
            if since <= until:
                found.setdefault(user_id, []).append(RatePeriod(row, since, until))
    return found


def head_user_id(portal: Portal) -> int | None:
    """The portal user who gets the monthly statement (settings.payroll.head_user_id)."""
    value = ((portal.settings or {}).get("payroll") or {}).get("head_user_id")
    return int(value) if isinstance(value, int) else None


