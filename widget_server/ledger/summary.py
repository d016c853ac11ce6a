"""The state of a stay as the card shows it: balance, holds, today's rate and the forecast."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from ..clock import local_today
from ..forecast import Forecast, forecast_stay
from ..models import LedgerEntry, Portal, PurchaseRequest, StayAccount
from .accounts import rate_on, rate_schedule
from .posting import account_state, run
from .settings import ledger_settings

__all__ = ["StaySummary", "WhatIf", "stay_summary"]


@dataclass(frozen=True)
class WhatIf:
    purchase_minor: int = 0
    tariff_rate_minor: int | None = None
    tariff_from: date | None = None


@dataclass(frozen=True)
class StaySummary:
    account: StayAccount
    today: date
    balance_minor: int
    holds_minor: int
    available_minor: int
    daily_rate_minor: int
    forecast: Forecast
    low_balance: bool
    first_uncharged: date
    pending_purchases: list[Row[Any]]
    """Purchase requests awaiting consent, oldest first, as rows with PurchaseRequest's columns."""
    recent_entries: list[Row[Any]]
    """The latest entries, newest first, as rows with the columns the card shows as attributes."""

    @property
    def days_left(self) -> int | None:
        return self.forecast.days_left(self.today)


_PENDING = (
    select(*PurchaseRequest.__table__.columns)
    .where(PurchaseRequest.account_id == bindparam("account_id"), PurchaseRequest.status == "pending")
    .order_by(PurchaseRequest.id)
)
_RECENT_COLUMNS = (
    "id", "seq", "kind", "sign", "amount_minor", "currency", "entry_date", "service_date", "method", "payer",
    "article_id", "reason", "reverses_entry_id", "actor", "source", "created_at",
)  # fmt: skip
"""What the card shows of an entry (the API's EntrySchema): not its hashes, keys and links, which would be
converted for every one of the ten rows on every request and never read."""
_RECENT = (
    select(*(LedgerEntry.__table__.c[name] for name in _RECENT_COLUMNS))
    .where(LedgerEntry.account_id == bindparam("account_id"))
    .order_by(LedgerEntry.seq.desc())
    .limit(bindparam("recent"))
)


def stay_summary(
    session: Session,
    portal: Portal,
    account: StayAccount,
    *,
    what_if: WhatIf | None = None,
    recent: int = 10,
    today: date | None = None,
    state: tuple[int, int, date | None] | None = None,
) -> StaySummary:
    """`state`: the account's balance, holds and last charged day when the caller already knows them
    (the entry it has just posted carries them as `state_after`), else they are read."""
    today = today or local_today(portal.timezone)
    balance, holds, last_daily = state if state is not None else account_state(session, account.id)
    schedule = rate_schedule(session, account.id)
    first_uncharged = account.admission_date if last_daily is None else last_daily + timedelta(days=1)
    available = balance - holds
    if what_if is not None:
        available -= what_if.purchase_minor
        if what_if.tariff_rate_minor is not None:
            start = what_if.tariff_from or max(first_uncharged, today + timedelta(days=1))
            schedule = [(d, r) for d, r in schedule if d < start] + [(start, what_if.tariff_rate_minor)]
    if account.status == "closed":
        forecast = Forecast(available, 0, True, None, None, 0)
    else:
        forecast = forecast_stay(available, schedule, first_uncharged)
    days_left = forecast.days_left(today)
    threshold = ledger_settings(portal).low_balance_days
    low = account.status == "open" and (
        forecast.days_of_debt > 0 or (days_left is not None and days_left <= threshold)
    )
    pending = list(run(session, _PENDING, {"account_id": account.id}))
    # Plain rows (the entry's columns as attributes): loading ten ORM objects per request costs more
    # than the whole query.
    entries = list(run(session, _RECENT, {"account_id": account.id, "recent": recent})) if recent else []
    return StaySummary(
        account=account,
        today=today,
        balance_minor=balance,
        holds_minor=holds,
        available_minor=available,
        daily_rate_minor=rate_on(schedule, today),
        forecast=forecast,
        low_balance=low,
        first_uncharged=first_uncharged,
        pending_purchases=pending,
        recent_entries=entries,
    )
