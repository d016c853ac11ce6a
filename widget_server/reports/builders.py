"""The five clinic reports of seed 004 / issue 11, as one table shape each: rows per period bucket, total
rows for the whole period, and a column list with Russian headers. JSON, CSV and PNG are all drawn from
that one table, so they cannot disagree.

- primary: people per bucket, classified by their first visit in the bucket (see `visits`): primary vs
  repeat, count and share. A person counts once per bucket, so the parts add up to the bucket's people.
- specialisations: completed visits by the doctor's specialty («Не указана» when the MIS gave none).
- sources: primary people by the source of the lead that became their visit, else the visit's channel.
- conversion: calls (intake leads created) → primary visits booked → completed; «% доведения» = completed ÷
  booked primary (each by the visit's local date).
- no-shows: no_show ÷ (completed + no_show), by branch and doctor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import MisLead
from .percent import ratio, shares
from .periods import Period, bucket_of
from .visits import as_date, booked_counts, lead_counts, period_counts, primary_counts, primary_firsts

__all__ = ["REPORTS", "TOTAL", "Chart", "Report", "build_report"]

TOTAL = "Итого"
_CAME = ("completed",)
NOT_GIVEN_SPECIALTY = "Не указана"
NOT_GIVEN_SOURCE = "Не указан"
NOT_GIVEN = "—"


@dataclass(frozen=True)
class Chart:
    """What the PNG draws: one bar group per total row labelled by `label`, a bar per `series` column."""

    label: str
    series: tuple[str, ...]
    stacked: bool = False


@dataclass
class Report:
    name: str
    title: str
    period: Period
    columns: list[tuple[str, str]]
    chart: Chart
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: list[dict[str, Any]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "report": self.name,
            "title": self.title,
            "from": self.period.start.isoformat(),
            "to": self.period.end.isoformat(),
            "group": self.period.group,
            "timezone": self.period.timezone,
            "columns": [{"key": key, "title": title} for key, title in self.columns],
            "rows": [_jsonable(row) for row in self.rows],
            "totals": [_jsonable(row) for row in self.totals],
        }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    # Percentages travel as decimal strings ("70.0"), like every exact number in our API.
    return {key: str(value) if isinstance(value, Decimal) else value for key, value in row.items()}


# --- primary ---------------------------------------------------------------------------------------------


def _primary_row(label: str, primary: int, repeat: int) -> dict[str, Any]:
    primary_pct, repeat_pct = shares([primary, repeat])
    return {
        "period": label, "primary": primary, "primary_pct": primary_pct, "repeat": repeat,
        "repeat_pct": repeat_pct, "total": primary + repeat,
    }  # fmt: skip


def _label(value: Any, period: Period) -> str:
    return bucket_of(as_date(value), period.group)


def primary_report(session: Session, portal_id: int, period: Period) -> Report:
    per_bucket: dict[str, list[int]] = {b: [0, 0, 0, 0] for b in period.buckets()}
    for bucket, numbers in primary_counts(session, portal_id, period).items():
        counts = per_bucket[bucket_of(bucket, period.group)]
        for i, n in enumerate(numbers):
            counts[i] += n
    report = Report(
        "primary", "Первичные пациенты", period,
        [("period", "Период"), ("primary", "Первичные"), ("primary_pct", "Первичные, %"),
         ("repeat", "Повторные"), ("repeat_pct", "Повторные, %"), ("total", "Всего пациентов")],
        Chart("period", ("primary", "repeat"), stacked=True),
    )  # fmt: skip
    report.rows = [_primary_row(b, n[0], n[1]) for b, n in per_bucket.items()]
    report.totals = [
        _primary_row(TOTAL, sum(n[2] for n in per_bucket.values()), sum(n[3] for n in per_bucket.values()))
    ]
    return report


# --- shares of a category (specialisations, sources) ------------------------------------------------------


def _share_rows(label: str, key: str, counts: Counter[str]) -> list[dict[str, Any]]:
    names = sorted(counts, key=lambda n: (-counts[n], n))
    pcts = shares([counts[n] for n in names])
    return [{"period": label, key: n, "count": counts[n], "pct": p} for n, p in zip(names, pcts, strict=True)]


def _share_report(
    name: str, title: str, key: str, header: str, count_title: str, period: Period,
    items: list[tuple[date, str, int]],
) -> Report:  # fmt: skip
    report = Report(
        name, title, period,
        [("period", "Период"), (key, header), ("count", count_title), ("pct", "Доля, %")],
        Chart(key, ("count",)),
    )  # fmt: skip
    per_bucket: dict[str, Counter[str]] = {b: Counter() for b in period.buckets()}
    total: Counter[str] = Counter()
    for day, category, n in items:
        per_bucket[bucket_of(day, period.group)][category] += n
        total[category] += n
    for bucket, counts in per_bucket.items():
        report.rows.extend(_share_rows(bucket, key, counts))
    report.totals = _share_rows(TOTAL, key, total)
    return report


def specialisations_report(session: Session, portal_id: int, period: Period) -> Report:
    counts = period_counts(session, portal_id, period, ["specialty"], _CAME)
    items = [(day, specialty or NOT_GIVEN_SPECIALTY, n) for (day, _, specialty), n in counts.items()]
    return _share_report(
        "specialisations", "Специализации", "specialty", "Специализация", "Визитов", period, items
    )


def _lead_sources(session: Session, portal_id: int, visit_ids: set[int]) -> dict[int, str]:
    if not visit_ids:
        return {}
    rows = session.execute(
        select(MisLead.appointment_id, MisLead.attribution, MisLead.form_name).where(
            MisLead.portal_id == portal_id, MisLead.appointment_id.is_not(None)
        )
    ).all()
    found: dict[int, str] = {}
    for appointment_id, attribution, form_name in rows:
        if appointment_id in visit_ids:
            source = (attribution or {}).get("utm_source") or form_name
            if source:
                found[appointment_id] = str(source)
    return found


def sources_report(session: Session, portal_id: int, period: Period) -> Report:
    firsts = primary_firsts(session, portal_id, period, ["channel"])
    leads = _lead_sources(session, portal_id, {row[0] for row in firsts})
    items = [(bucket, leads.get(vid) or channel or NOT_GIVEN_SOURCE, 1) for vid, bucket, channel in firsts]
    return _share_report("sources", "Источники", "source", "Источник", "Первичных пациентов", period, items)


# --- conversion --------------------------------------------------------------------------------------------


def _conversion_row(label: str, calls: int, booked: int, completed: int) -> dict[str, Any]:
    return {
        "period": label, "calls": calls, "booked": booked, "booked_pct": ratio(booked, calls),
        "completed": completed, "completed_pct": ratio(completed, booked),
    }  # fmt: skip


def conversion_report(session: Session, portal_id: int, period: Period) -> Report:
    booked: Counter[str] = Counter()
    completed: Counter[str] = Counter()
    for bucket, (primary, came) in booked_counts(session, portal_id, period).items():
        label = bucket_of(bucket, period.group)
        booked[label] += primary
        completed[label] += came
    calls: Counter[str] = Counter()
    for bucket, n in session.connection().execute(lead_counts(session, portal_id, period)):
        calls[_label(bucket, period)] += n
    report = Report(
        "conversion", "Конверсия первичных пациентов", period,
        [("period", "Период"), ("calls", "Обращения"), ("booked", "Записаны (первичные)"),
         ("booked_pct", "Записаны, % от обращений"), ("completed", "Пришли"),
         ("completed_pct", "% доведения")],
        Chart("period", ("calls", "booked", "completed")),
    )  # fmt: skip
    report.rows = [_conversion_row(b, calls[b], booked[b], completed[b]) for b in period.buckets()]
    report.totals = [
        _conversion_row(TOTAL, sum(calls.values()), sum(booked.values()), sum(completed.values()))
    ]
    return report


# --- no-shows ----------------------------------------------------------------------------------------------


def _no_show_rows(label: str, counts: dict[tuple[str, str], list[int]]) -> list[dict[str, Any]]:
    return [
        {"period": label, "branch": branch, "doctor": doctor, "completed": c, "no_show": n,
         "no_show_pct": ratio(n, c + n)}
        for (branch, doctor), (c, n) in sorted(counts.items())
    ]  # fmt: skip


def no_shows_report(session: Session, portal_id: int, period: Period) -> Report:
    counts = period_counts(session, portal_id, period, ["branch", "doctor"], ("completed", "no_show"))
    report = Report(
        "no-shows", "Неявки", period,
        [("period", "Период"), ("branch", "Филиал"), ("doctor", "Врач"), ("completed", "Пришли"),
         ("no_show", "Не пришли"), ("no_show_pct", "Неявки, %")],
        Chart("doctor", ("completed", "no_show"), stacked=True),
    )  # fmt: skip
    per_bucket: dict[str, dict[tuple[str, str], list[int]]] = {b: {} for b in period.buckets()}
    total: dict[tuple[str, str], list[int]] = {}
    for (day, status, branch, doctor), n in counts.items():
        pair = (branch or NOT_GIVEN, doctor or NOT_GIVEN)
        for table in (per_bucket[bucket_of(day, period.group)], total):
            table.setdefault(pair, [0, 0])[status == "no_show"] += n
    for bucket, table in per_bucket.items():
        report.rows.extend(_no_show_rows(bucket, table))
    report.totals = _no_show_rows(TOTAL, total)
    return report


REPORTS: dict[str, Callable[[Session, int, Period], Report]] = {
    "primary": primary_report,
    "specialisations": specialisations_report,
    "sources": sources_report,
    "conversion": conversion_report,
    "no-shows": no_shows_report,
}


def build_report(session: Session, portal_id: int, name: str, period: Period) -> Report:
    return REPORTS[name](session, portal_id, period)
