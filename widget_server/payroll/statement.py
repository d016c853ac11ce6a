"""One month's payroll for every operator with a rate, as a breakdown anyone can check.

Formula (seed 004, issue 11), exact minutes, each line rounded half up to kopecks on its own:
- base       = hourly rate × min(worked, scheduled)
- overtime   = overtime rate × max(0, worked − scheduled); with `overtime_basis` "day" both are taken per
               local day and summed, with "month" over the month's totals (an unscheduled Saturday is all
               overtime either way; a short day offsets a long one only by the month)
- conversion = bonus × primary patients the operator booked whose visit took place in the month (shown
               with their «% доведения» = came ÷ booked)
- waiting    = bonus × «Лист ожидания» visits the operator booked that took place in the month

A visit is the operator's when the MIS's «Записал» (booked_by) is their name or one of their `mis_names`;
when the MIS names nobody, the deal's responsible operator (the distribution's live assignment) gets it. A
waiting-list visit earns the waiting-list bonus only (it lands in that pipeline, not in the primary one).

Rates are effective-dated: the month is cut into rate periods at each directory row's `effective_from` (a
local midnight), and every line kind gets a line per period, quantity × that period's rate. Hours belong
to the local day they were worked in (a night shift across the change pays its hours before midnight at
the old rate), a bonus to the visit's local date, and `overtime_basis` "month" compares the period's
totals (the row also carries the basis, so it may change with the rate). Days before an operator's first
row pay nothing. Scheduled hours come from `schedule.scheduled_intervals`: the «Рабочие графики» calendar
entries, else the operator's weekly or cyclic payroll schedule with its day overrides.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import (
    DistributionAssignment,
    OperatorStatusEvent,
    PayrollRate,
    Portal,
    PortalUser,
)
from ..models.payroll import PayrollSchedule
from ..money import format_minor, minor_to_decimal, quantize_minor
from ..reports.percent import ratio
from ..reports.periods import Period
from ..reports.visits import Visit, period_visits
from .hours import DayMinutes, late_starts, minutes_by_day, shifts_from_events
from .rates import PayrollInvalid, RatePeriod, rate_periods
from .schedule import scheduled_by_user

__all__ = ["month_bounds", "month_schedule", "payroll_csv", "payroll_statement"]

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_bounds(text: str) -> tuple[date, date]:
    match = _MONTH.match(text or "")
    if not match:
        raise PayrollInvalid("month", f"must be YYYY-MM, got {text!r}")
    first = date(int(match[1]), int(match[2]), 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return first, last


def _name_key(name: str) -> str:
    return " ".join(name.casefold().replace("ё", "е").split())


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def _amount(rate: Decimal, quantity: Decimal, currency: str) -> int:
    return quantize_minor(rate * quantity, currency)


def _line(
    code: str,
    title: str,
    quantity: Decimal,
    shown: str,
    unit: str,
    period: RatePeriod,
    rate: Decimal,
    currency: str,
    split: bool,
) -> dict[str, Any]:
    minor = _amount(rate, quantity, currency)
    if split:
        title = f"{title} ({period.first:%d.%m}–{period.last:%d.%m})"
    return {
        "code": code, "title": title, "quantity": shown, "unit": unit, "rate": str(rate),
        "amount": str(minor_to_decimal(minor, currency)), "amount_minor": minor,
        "from": period.first.isoformat(), "to": period.last.isoformat(),
        "effective_from": period.rate.effective_from.isoformat(),
    }  # fmt: skip


def _hours_lines(
    period: RatePeriod, days: dict[date, DayMinutes], currency: str, split: bool
) -> tuple[list[dict[str, Any]], int, int]:
    rate = period.rate
    if rate.overtime_basis == "day":
        base = sum(min(d.worked, d.scheduled) for d in days.values())
        over = sum(max(0, d.worked - d.scheduled) for d in days.values())
    else:
        worked = sum(d.worked for d in days.values())
        scheduled = sum(d.scheduled for d in days.values())
        base, over = min(worked, scheduled), max(0, worked - scheduled)
    lines = [
        _line("base", "Часы по графику", Decimal(base) / 60, _hhmm(base), "ч", period, rate.hourly_rate,
              currency, split),
        _line("overtime", "Переработка", Decimal(over) / 60, _hhmm(over), "ч", period, rate.overtime_rate,
              currency, split),
    ]  # fmt: skip
    # Exact minutes beside the h:mm: amount = rate × minutes ÷ 60, rounded half up to kopecks.
    lines[0]["minutes"], lines[1]["minutes"] = base, over
    return lines, base, over


def _pct_text(came: int, booked: int) -> str:
    pct = ratio(came, booked)
    return f" (доведение {str(pct).replace('.', ',')} %)" if pct is not None else ""


def _events(
    session: Session, portal_id: int, user_ids: list[int], begin: datetime, finish: datetime
) -> dict[int, list[tuple[datetime, str]]]:
    found: dict[int, list[tuple[datetime, str]]] = {uid: [] for uid in user_ids}
    # A day ends within hours of its start: a day before and after the month catches night shifts.
    for uid, at, state in session.execute(
        select(OperatorStatusEvent.user_id, OperatorStatusEvent.at, OperatorStatusEvent.state)
        .where(
            OperatorStatusEvent.portal_id == portal_id,
            OperatorStatusEvent.user_id.in_(user_ids),
            OperatorStatusEvent.at >= begin - timedelta(days=1),
            OperatorStatusEvent.at < finish + timedelta(days=1),
        )
        .order_by(OperatorStatusEvent.at, OperatorStatusEvent.id)
    ):
        found[uid].append((at, state))
    return found


def _responsible(session: Session, portal_id: int, deal_ids: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    ids = sorted(deal_ids)
    for start in range(0, len(ids), 500):
        for deal_id, user_id in session.execute(
            select(DistributionAssignment.deal_id, DistributionAssignment.user_id).where(
                DistributionAssignment.portal_id == portal_id,
                DistributionAssignment.deal_id.in_(ids[start : start + 500]),
                DistributionAssignment.user_id.is_not(None),
            )
        ):
            found[deal_id] = user_id
    return found


def _owners(
    visits: Iterable[Visit], names: dict[str, int], responsible: dict[str, int]
) -> dict[int, list[Visit]]:
    owned: dict[int, list[Visit]] = {}
    for visit in visits:
        if visit.booked_by is not None:
            owner = names.get(_name_key(visit.booked_by))
        else:
            owner = responsible.get(visit.deal_id) if visit.deal_id else None
        if owner is not None:
            owned.setdefault(owner, []).append(visit)
    return owned


def _visit_item(visit: Visit, kind: str) -> dict[str, Any]:
    return {
        "appointment_id": visit.id, "date": visit.day.isoformat(), "kind": kind, "status": visit.status,
        "deal_id": visit.deal_id, "booked_by": visit.booked_by, "counted": visit.status == "completed",
    }  # fmt: skip


def _iso(moment: datetime | None, zone: ZoneInfo) -> str | None:
    return moment.astimezone(zone).isoformat(timespec="minutes") if moment is not None else None


def _rate_document(rate: PayrollRate) -> dict[str, Any]:
    return {
        "effective_from": rate.effective_from.isoformat(), "hourly_rate": str(rate.hourly_rate),
        "overtime_rate": str(rate.overtime_rate), "primary_bonus": str(rate.primary_bonus),
        "waiting_list_bonus": str(rate.waiting_list_bonus), "overtime_basis": rate.overtime_basis,
    }  # fmt: skip


def _bonus_lines(
    periods: list[RatePeriod], primary: list[Visit], waiting: list[Visit], currency: str
) -> list[dict[str, Any]]:
    split = len(periods) > 1
    lines: list[dict[str, Any]] = []
    for period in periods:
        booked = [v for v in primary if v.day in period]
        came = sum(1 for v in booked if v.status == "completed")
        title = f"Первичные пациенты: пришли {came} из {len(booked)}" + _pct_text(came, len(booked))
        lines.append(_line(
            "conversion", title,
            Decimal(came), str(came), "пац.", period, period.rate.primary_bonus, currency, split,
        ))  # fmt: skip
    for period in periods:
        waited = sum(1 for v in waiting if v.day in period and v.status == "completed")
        lines.append(_line(
            "waiting_list", "Лист ожидания: визиты состоялись", Decimal(waited), str(waited), "виз.",
            period, period.rate.waiting_list_bonus, currency, split,
        ))  # fmt: skip
    return lines


def payroll_statement(session: Session, portal: Portal, month: str) -> dict[str, Any]:
    first, last = month_bounds(month)
    zone = ZoneInfo(portal.timezone)
    period = Period(first, last, "month", portal.timezone)
    begin, finish = period.utc_bounds()
    currency = portal.currency
    periods_of = rate_periods(session, portal.id, first, last)
    user_ids = sorted(periods_of)
    users = {
        u.id: u for u in session.scalars(select(PortalUser).where(PortalUser.id.in_(user_ids)))
    } if user_ids else {}  # fmt: skip
    events = _events(session, portal.id, user_ids, begin, finish) if user_ids else {}
    schedule = scheduled_by_user(session, portal.id, user_ids, zone, first, last) if user_ids else {}
    fields = ["booked_by", "waiting_list", "deal_id"]
    visits = period_visits(session, portal.id, period, fields) if user_ids else []
    names: dict[str, int] = {}
    for uid in user_ids:
        mis_names = {name for p in periods_of[uid] for name in p.rate.mis_names or []}
        for name in [users[uid].name, *sorted(mis_names)]:
            names.setdefault(_name_key(name), uid)
    unnamed = {v.deal_id for v in visits if v.booked_by is None and v.deal_id}
    owned = _owners(visits, names, _responsible(session, portal.id, unnamed) if unnamed else {})

    operators: list[dict[str, Any]] = []
    total_minor = 0
    for uid in user_ids:
        periods, user = periods_of[uid], users[uid]
        rate = periods[-1].rate
        rated = periods[0].first
        shifts = shifts_from_events(events[uid])
        days = minutes_by_day(shifts, schedule[uid], zone, rated, last)
        lines: list[dict[str, Any]] = []
        base = over = 0
        for part in periods:
            hours, part_base, part_over = _hours_lines(
                part, {d: m for d, m in days.items() if d in part}, currency, len(periods) > 1
            )
            lines.extend(hours)
            base, over = base + part_base, over + part_over
        # Kind by kind: the base lines of every period, then the overtime lines, then the bonuses.
        lines.sort(key=lambda line: line["code"] != "base")
        mine = [v for v in owned.get(uid, []) if v.day >= rated]
        primary = [v for v in mine if v.primary and not v.waiting_list]
        waiting = [v for v in mine if v.waiting_list]
        lines.extend(_bonus_lines(periods, primary, waiting, currency))
        came = sum(1 for v in primary if v.status == "completed")
        pct = ratio(came, len(primary))
        operator_minor = sum(line["amount_minor"] for line in lines)
        total_minor += operator_minor
        open_shifts = [s for s in shifts if s.ended_at is None and begin <= s.started_at < finish]
        counted_shifts = [
            s for s in shifts if s.ended_at is not None and s.started_at < finish and s.ended_at > begin
        ]
        operators.append({
            "user_id": uid,
            "name": user.name,
            "rate": _rate_document(rate),
            "rates": [
                {**_rate_document(p.rate), "from": p.first.isoformat(), "to": p.last.isoformat()}
                for p in periods
            ],
            "minutes": {
                "worked": sum(d.worked for d in days.values()),
                "scheduled": sum(d.scheduled for d in days.values()),
                "base": base,
                "overtime": over,
            },
            "conversion": {
                "booked": len(primary), "came": came, "pct": None if pct is None else str(pct),
            },
            "lines": lines,
            "total": str(minor_to_decimal(operator_minor, currency)),
            "total_minor": operator_minor,
            "total_text": format_minor(operator_minor, currency, portal.locale),
            "days": [
                {"date": d.isoformat(), "scheduled_minutes": m.scheduled, "worked_minutes": m.worked}
                for d, m in days.items()
            ],
            "shifts": [
                {
                    "started_at": _iso(s.started_at, zone), "ended_at": _iso(s.ended_at, zone),
                    "minutes": s.minutes,
                }
                for s in counted_shifts
            ],
            "open_shifts": [
                {"started_at": _iso(s.started_at, zone), "reason": "не завершена: часы не считаются"}
                for s in open_shifts
            ],
            "late_starts": [
                {"date": late.day.isoformat(), "scheduled_start": _iso(late.scheduled_start, zone),
                 "started_at": _iso(late.started_at, zone), "minutes_late": late.minutes_late}
                for late in late_starts(shifts, schedule[uid], zone)
                if rated <= late.day <= last
            ],
            "appointments": [_visit_item(v, "primary") for v in primary]
            + [_visit_item(v, "waiting_list") for v in waiting],
        })  # fmt: skip
    return {
        "month": month,
        "currency": currency,
        "timezone": portal.timezone,
        "operators": operators,
        "total": str(minor_to_decimal(total_minor, currency)),
        "total_minor": total_minor,
        "total_text": format_minor(total_minor, currency, portal.locale),
    }


def month_schedule(session: Session, portal: Portal, month: str) -> list[dict[str, Any]]:
    """What the payroll will count as scheduled in `month` for every operator with a rate or a schedule:
    per local day the minutes, and the intervals (local times) they come from."""
    first, last = month_bounds(month)
    zone = ZoneInfo(portal.timezone)
    begin, finish = Period(first, last, "month", portal.timezone).utc_bounds()
    with_pattern = session.scalars(
        select(PayrollSchedule.user_id).where(
            PayrollSchedule.portal_id == portal.id, PayrollSchedule.effective_from <= last
        )
    )
    user_ids = sorted({*with_pattern, *rate_periods(session, portal.id, first, last)})
    schedule = scheduled_by_user(session, portal.id, user_ids, zone, first, last) if user_ids else {}
    found = []
    for uid in user_ids:
        days = minutes_by_day([], schedule[uid], zone, first, last)
        found.append({
            "user_id": uid,
            "minutes": sum(m.scheduled for m in days.values()),
            "days": [{"date": d.isoformat(), "minutes": m.scheduled} for d, m in days.items()],
            "intervals": [
                {"starts_at": _iso(b, zone), "ends_at": _iso(e, zone)}
                for b, e in schedule[uid] if b < finish and e > begin
            ],
        })  # fmt: skip
    return found


_CSV_HEADER = ["Оператор", "Раздел", "Дата", "Описание", "Количество", "Ед.", "Ставка", "Сумма"]


def _money(text: str | None) -> str:
    return "" if text is None else text.replace(".", ",")


def payroll_csv(statement: dict[str, Any]) -> str:
    """UTF-8 with BOM, `;`: the «Начисление» rows of an operator add up to their «Итого» row, and the
    operators' «Итого» rows to the last row; the other rows are the items those lines counted."""
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow(_CSV_HEADER)
    for op in statement["operators"]:
        name = op["name"]
        for line in op["lines"]:
            w.writerow([name, "Начисление", "", line["title"], line["quantity"], line["unit"],
                        _money(line["rate"]), _money(line["amount"])])  # fmt: skip
        w.writerow([name, "Итого", "", "", "", "", "", _money(op["total"])])
        for day in op["days"]:
            hours = f"{_hhmm(day['scheduled_minutes'])} / {_hhmm(day['worked_minutes'])}"
            w.writerow([name, "День", day["date"], "по графику / отработано", hours, "ч", "", ""])
        for shift in op["shifts"]:
            span = f"{shift['started_at']} – {shift['ended_at']}"
            w.writerow([name, "Смена", shift["started_at"][:10], span, _hhmm(shift["minutes"]), "ч", "", ""])
        for shift in op["open_shifts"]:
            w.writerow([name, "Открытая смена", shift["started_at"][:10], shift["reason"], "", "", "", ""])
        for late in op["late_starts"]:
            text = f"опоздание {late['minutes_late']} мин" if late["minutes_late"] is not None else "не вышел"
            w.writerow([name, "Опоздание", late["date"], text, "", "", "", ""])
        for item in op["appointments"]:
            kind = "Первичный" if item["kind"] == "primary" else "Лист ожидания"
            status = "пришёл" if item["counted"] else item["status"]
            w.writerow([name, f"Визит: {kind}", item["date"],
                        f"визит {item['appointment_id']}, сделка {item['deal_id'] or '—'}: {status}",
                        "1" if item["counted"] else "0", "", "", ""])  # fmt: skip
    w.writerow(["Всего", "Итого", "", "", "", "", "", _money(statement["total"])])
    return "\ufeff" + out.getvalue()
