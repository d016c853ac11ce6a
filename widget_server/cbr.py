"""The HTTP side of CBR rates: one GET of `XML_daily.asp`, retried on transient trouble.

Parsing and the cache rules are domain code (`invoices/rates.py`); this module only turns a day into the
raw windows-1251 bytes, or into `RateUnavailable` once retries run out (the API then answers 422 `rate`
and the invoice stays a draft).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from .db import Database, mark_read_only
from .invoices.errors import RateUnavailable
from .invoices.rates import Quote, RateSet, cached_set, convert_rate, parse_daily, store

__all__ = ["CBR_DAILY_URL", "fetch_daily", "quote_for", "rate_set"]

log = logging.getLogger(__name__)

CBR_DAILY_URL = "https://www.cbr.ru/scripts/XML_daily.asp"
ATTEMPTS = 3
TIMEOUT_S = (3.05, 10)
WAIT_MULTIPLIER = 0.5


class _Transient(Exception):
    pass


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, _Transient | requests.ConnectionError | requests.Timeout)


def fetch_daily(day: date) -> bytes:
    """The CBR's answer for `day`, as bytes (the XML declares its own encoding)."""
    params = {"date_req": day.strftime("%d/%m/%Y")}
    try:
        for attempt in Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_exponential(multiplier=WAIT_MULTIPLIER, max=5),
            reraise=True,
        ):
            with attempt:
                response = requests.get(CBR_DAILY_URL, params=params, timeout=TIMEOUT_S)
                if response.status_code >= 500 or response.status_code == 429:
                    raise _Transient(f"CBR answered {response.status_code}")
                if response.status_code != 200:
                    raise RateUnavailable(f"the CBR answered {response.status_code} for {day.isoformat()}")
                return response.content
    except (_Transient, requests.RequestException) as exc:
        log.warning("CBR rates for %s unavailable after %d attempts: %s", day, ATTEMPTS, exc)
        raise RateUnavailable(
            f"the CBR rate for {day.strftime('%d.%m.%Y')} is unavailable now ({exc}); try again later"
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def rate_set(
    db: Database, day: date, today: date, *, fetch: Callable[[date], bytes] = fetch_daily
) -> RateSet:
    """The set for `day` from the shared cache, else fetched and cached by the domain's rules. The HTTP
    call runs between two short transactions, never while a database lock is held."""
    with db.transaction() as session:
        mark_read_only(session)
        cached = cached_set(session, day)
    if cached is not None:
        return cached
    fetched = parse_daily(fetch(day))
    with db.transaction() as session:
        store(session, day, fetched, today)
    return fetched


def quote_for(db: Database, day: date, source: str, target: str, today: date) -> Quote:
    fetched = rate_set(db, day, today)
    return Quote(convert_rate(fetched, source, target), fetched.effective_date, source, target)
