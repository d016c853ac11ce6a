"""Bank of Russia (CBR) daily rates: parsing, the cache rules and conversion.

`XML_daily.asp?date_req=DD/MM/YYYY` answers windows-1251 XML with decimal commas; each `Value` is roubles
per `Nominal` units (1, 10, 100 …). `ValCurs/@Date` is the date the set is *effective* from, which is not
always the date asked for: a Sunday or a holiday gets the last published set, and that date is what an
invoice prints. The cache is shared by all portals (the CBR publishes one set for everybody):
- a set is stored once per effective date (`cbr_rates`), and a requested day maps to it (`cbr_rate_days`);
- a day up to today is cached whatever `@Date` says (past sets never change);
- a future day is cached only once `@Date` equals it, i.e. once the CBR has published it; before that it
  is served from the answer without being remembered.
The HTTP fetch lives outside this package (`widget_server/cbr.py`) and is passed in as `fetch`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation, localcontext

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import CbrRate, CbrRateDay
from .errors import RateUnavailable

__all__ = ["Quote", "RateSet", "cached_set", "convert_rate", "parse_daily", "quote", "rate_set_for", "store"]

Fetch = Callable[[date], bytes]


@dataclass(frozen=True)
class RateSet:
    effective_date: date
    rates: dict[str, tuple[int, Decimal]]
    """CharCode → (Nominal, Value): Value roubles for Nominal units."""

    def per_unit(self, currency: str) -> Decimal:
        if currency == "RUB":
            return Decimal(1)
        if currency not in self.rates:
            raise RateUnavailable(f"the CBR publishes no rate for {currency}")
        nominal, value = self.rates[currency]
        with localcontext() as ctx:
            ctx.prec = 34
            return value / nominal


def parse_daily(body: bytes) -> RateSet:
    """The raw bytes (so the XML declaration's windows-1251 is honoured) → RateSet."""
    try:
        root = ET.fromstring(body)  # noqa: S314
        effective = datetime.strptime(root.attrib["Date"], "%d.%m.%Y").date()  # noqa: DTZ007 - a date
        rates: dict[str, tuple[int, Decimal]] = {}
        for valute in root.findall("Valute"):
            code = (valute.findtext("CharCode") or "").strip()
            nominal = int((valute.findtext("Nominal") or "").strip())
            value = Decimal((valute.findtext("Value") or "").strip().replace(",", "."))
            if code and nominal > 0 and value > 0:
                rates[code] = (nominal, value)
    except (ET.ParseError, KeyError, ValueError, InvalidOperation) as exc:
        raise RateUnavailable(f"the CBR answer could not be read: {exc}") from None
    if not rates:
        raise RateUnavailable("the CBR answer has no rates")
    return RateSet(effective, rates)


def _load_set(session: Session, effective: date) -> RateSet | None:
    rows = session.scalars(select(CbrRate).where(CbrRate.effective_date == effective)).all()
    if not rows:
        return None
    return RateSet(effective, {r.char_code: (r.nominal, Decimal(r.value)) for r in rows})


def cached_set(session: Session, day: date) -> RateSet | None:
    mapping = session.get(CbrRateDay, day)
    return _load_set(session, mapping.effective_date) if mapping is not None else None


def store(session: Session, day: date, rate_set: RateSet, today: date) -> bool:
    """Remember `rate_set` as the answer for `day` if the rules allow; True if `day` is now cached. Safe
    against a concurrent writer storing the same set (the unique constraints decide)."""
    if day > today and rate_set.effective_date != day:
        return False
    if _load_set(session, rate_set.effective_date) is None:
        try:
            with session.begin_nested():
                session.add_all(
                    CbrRate(effective_date=rate_set.effective_date, char_code=code, nominal=n, value=v)
                    for code, (n, v) in sorted(rate_set.rates.items())
                )
        except IntegrityError:
            pass
    if session.get(CbrRateDay, day) is None:
        try:
            with session.begin_nested():
                session.add(CbrRateDay(day=day, effective_date=rate_set.effective_date))
        except IntegrityError:
            pass
    return True


def rate_set_for(session: Session, day: date, today: date, fetch: Fetch) -> RateSet:
    """The set for `day`: from the cache, or fetched (and cached by the rules above)."""
    cached = cached_set(session, day)
    if cached is not None:
        return cached
    rate_set = parse_daily(fetch(day))
    store(session, day, rate_set, today)
    return rate_set


def convert_rate(rate_set: RateSet, source: str, target: str) -> Decimal:
    """Units of `target` per one unit of `source`. Through RUB: EUR/USD → RUB is the published rate
    itself; any other pair is a cross rate kept at full precision (rounding happens per line)."""
    if source == target:
        return Decimal(1)
    with localcontext() as ctx:
        ctx.prec = 34
        return rate_set.per_unit(source) / rate_set.per_unit(target)


@dataclass(frozen=True)
class Quote:
    rate: Decimal
    effective_date: date
    source: str
    target: str

    def printed(self) -> str:
        """«Курс ЦБ РФ на 13.12.2025: 1 EUR = 93,5412 ₽». Roubles into a foreign currency are printed the
        way the CBR quotes them (1 EUR = … ₽), not as 1 RUB = 0,0107 EUR."""
        source, target, shown = self.quoted()
        unit = "₽" if target == "RUB" else target
        # Neither side in roubles: the CBR publishes no such rate, it is derived from two of its rates.
        title = "Курс ЦБ РФ" if "RUB" in (source, target) else "Кросс-курс по курсам ЦБ РФ"
        return f"{title} на {self.effective_date.strftime('%d.%m.%Y')}: 1 {source} = {shown} {unit}"

    def quoted(self) -> tuple[str, str, str]:
        """(unit currency, quote currency, rate with 4 decimals and a comma), foreign currency first."""
        source, target, rate = self.source, self.target, self.rate
        if source == "RUB":
            with localcontext() as ctx:
                ctx.prec = 34
                source, target, rate = target, source, Decimal(1) / rate
        return source, target, f"{rate.quantize(Decimal('0.0001')):f}".replace(".", ",")


def quote(session: Session, day: date, source: str, target: str, today: date, fetch: Fetch) -> Quote:
    rate_set = rate_set_for(session, day, today, fetch)
    return Quote(convert_rate(rate_set, source, target), rate_set.effective_date, source, target)
