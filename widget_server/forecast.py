"""Stay calculator (расчёт срока пребывания): how long the money lasts at the scheduled daily rates.

Pure arithmetic over integers: the available balance (after purchase holds), the tariff schedule and the
first day not yet charged. "Paid through" is the last day fully covered; a day the balance only partly
covers is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

__all__ = ["Forecast", "forecast_stay"]


@dataclass(frozen=True)
class Forecast:
    available_minor: int
    daily_rate_minor: int
    """The rate on the first uncharged day (what the next daily debit takes)."""
    unlimited: bool
    """No positive rate from the first uncharged day on: the balance never runs out."""
    days_covered: int | None
    """Future days the available balance pays for in full; None when unlimited."""
    paid_through: date | None
    """Last fully covered day; None when unlimited."""
    days_of_debt: int
    """When the balance is negative: how many days' rate the debt amounts to (rounded up)."""

    def days_left(self, today: date) -> int | None:
        return None if self.paid_through is None else (self.paid_through - today).days


def _segments(schedule: list[tuple[date, int]], start: date) -> list[tuple[date, date | None, int]]:
    """[(from, to_exclusive or None, rate)] covering start..∞."""
    rate_at_start = 0
    later: list[tuple[date, int]] = []
    for effective_from, rate in schedule:
        if effective_from <= start:
            rate_at_start = rate
        else:
            later.append((effective_from, rate))
    segments: list[tuple[date, date | None, int]] = []
    cursor, rate = start, rate_at_start
    for effective_from, next_rate in later:
        segments.append((cursor, effective_from, rate))
        cursor, rate = effective_from, next_rate
    segments.append((cursor, None, rate))
    return segments


def forecast_stay(available_minor: int, schedule: list[tuple[date, int]], first_uncharged: date) -> Forecast:
    segments = _segments(schedule, first_uncharged)
    current_rate = segments[0][2]
    if all(rate == 0 for _start, _end, rate in segments):
        return Forecast(available_minor, current_rate, True, None, None, 0)

    if available_minor < 0:
        # The debt is priced at the rate of the last charged day (or the next one if nothing was charged).
        rate = current_rate or next(r for _s, _e, r in segments if r > 0)
        debt_days = -(available_minor // rate)  # ceil(debt / rate) with integer floor division
        paid_through = first_uncharged - timedelta(days=1 + debt_days)
        return Forecast(available_minor, current_rate, False, 0, paid_through, debt_days)

    remaining, covered = available_minor, 0
    for start, end, rate in segments:
        length = None if end is None else (end - start).days
        if rate == 0:
            if length is None:  # free from here on
                return Forecast(available_minor, current_rate, True, None, None, 0)
            covered += length
            continue
        affordable = remaining // rate
        if length is not None and affordable >= length:
            remaining -= length * rate
            covered += length
            continue
        covered += affordable
        break
    paid_through = first_uncharged + timedelta(days=covered - 1)
    return Forecast(available_minor, current_rate, False, covered, paid_through, 0)
