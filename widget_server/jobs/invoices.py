"""Invoice jobs: the daily CBR rate refresh.

Runs hourly; each run fetches only what the shared cache lacks: the last week (a missed day is caught
up), today and tomorrow. Tomorrow is cached only once the CBR has published it (`@Date` equals it), so
an early run changes nothing and a later one completes it. Two runs therefore store one set.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .. import runtime
from ..cbr import rate_set
from ..clock import local_today
from ..db import mark_read_only
from ..invoices.errors import RateUnavailable
from ..invoices.rates import cached_set
from .joblog import logged_job

__all__ = ["CATCH_UP_DAYS", "CBR_TIMEZONE", "refresh_cbr_rates"]

CBR_TIMEZONE = "Europe/Moscow"
"""The Bank of Russia's day is Moscow's, whatever the clinic's timezone."""
CATCH_UP_DAYS = 7


@logged_job("refresh_cbr_rates")
def refresh_cbr_rates(now: datetime | None = None, catch_up_days: int = CATCH_UP_DAYS) -> str:
    db = runtime.current().db
    today = local_today(CBR_TIMEZONE, now)
    days = [today - timedelta(days=back) for back in range(catch_up_days, 0, -1)] + [
        today,
        today + timedelta(days=1),
    ]
    fetched = failed = 0
    for day in days:
        with db.transaction() as session:
            mark_read_only(session)
            if cached_set(session, day) is not None:
                continue
        try:
            rate_set(db, day, today)
            fetched += 1
        except RateUnavailable:
            failed += 1
    return f"fetched {fetched} failed {failed}"
