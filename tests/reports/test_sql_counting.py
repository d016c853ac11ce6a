"""The database counts the primary, sources and conversion reports (window functions, one sort per
person): every figure must equal the seed 004 rule applied visit by visit in Python (`period_visits`,
which payroll reads), on a random clinic with aliases, month ends, late-evening visits and a period that
starts mid-week."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta

import pytest

from widget_server.models import MisLead, MisPatient
from widget_server.reports import build_report, make_period, period_visits, shares
from widget_server.reports.percent import ratio
from widget_server.reports.periods import bucket_of

from .clinic_data import msk

STATUSES = ("completed", "completed", "completed", "no_show", "cancelled", "booked", "void")
CHANNELS = ("сайт", "звонок", None)


def _random_clinic(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    people = [clinic.patient(f"Пациент {n}") for n in range(60)]
    with rt.db.transaction() as s:
        # The MIS merged two cards: the alias's visits are the first card's person.
        s.get(MisPatient, people[1]).alias_of_id = people[0]
        s.get(MisPatient, people[3]).alias_of_id = people[2]
    start = date(2025, 6, 1)
    for n in range(260):
        day = start + timedelta(days=rng.randrange(400))
        if n % 9 == 0:  # month ends: 31.08 + 6 months is 28.02, not 03.03
            day = date(day.year, day.month, 28) + timedelta(days=rng.randrange(4))
        at = msk(day.year, day.month, day.day, rng.choice((0, 9, 12, 23)), rng.choice((0, 30, 59)))
        status = rng.choice(STATUSES)
        vid = clinic.visit(rng.choice(people), at, status, channel=rng.choice(CHANNELS))
        if status == "completed" and n % 4 == 0:
            with rt.db.transaction() as s:
                s.add(MisLead(
                    portal_id=clinic.portal.id, deal_id=f"L{n}", lead_created_at=at - timedelta(hours=30),
                    name="Заявка", form_name="Форма" if n % 8 else None, appointment_id=vid,
                    attribution={"utm_source": "yandex"} if n % 8 == 0 else {},
                ))  # fmt: skip


def _expected(rt, clinic, period) -> dict[str, list[dict]]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        came = period_visits(s, clinic.portal.id, period, ["channel"], statuses=("completed",))
        booked = period_visits(s, clinic.portal.id, period)
        leads = {
            lead.appointment_id: (lead.attribution or {}).get("utm_source") or lead.form_name
            for lead in s.query(MisLead).filter(MisLead.appointment_id.is_not(None))
        }
        calls = Counter(
            bucket_of(period.local_date(lead.lead_created_at), period.group)
            for lead in s.query(MisLead)
            if period.start <= period.local_date(lead.lead_created_at) <= period.end
        )
    primary_rows, sources, conversion = [], Counter(), []
    for label in [*period.buckets(), None]:
        inside = [v for v in came if label is None or bucket_of(v.day, period.group) == label]
        firsts = list({v.person: v for v in reversed(inside)}.values())
        primary = sum(v.primary for v in firsts)
        primary_rows.append((label, primary, len(firsts) - primary))
        if label is not None:
            for v in firsts:
                if v.primary:
                    sources[(label, leads.get(v.id) or v.channel or "Не указан")] += 1
        made = [v for v in booked if (label is None or bucket_of(v.day, period.group) == label) and v.primary]
        done = sum(v.status == "completed" for v in made)
        n_calls = sum(calls.values()) if label is None else calls[label]
        conversion.append(
            (label, n_calls, len(made), ratio(len(made), n_calls), done, ratio(done, len(made)))
        )
    return {"primary": primary_rows, "sources": sorted(sources.items()), "conversion": conversion}


@pytest.mark.parametrize(
    ("start", "end", "group"),
    [
        (date(2026, 1, 1), date(2026, 6, 30), "month"),
        (date(2026, 2, 4), date(2026, 4, 30), "week"),  # a Wednesday: its week began in the history
        (date(2026, 2, 25), date(2026, 3, 10), "day"),
    ],
)
def test_counted_in_sql_as_classified_visit_by_visit(rt, clinic, start, end, group) -> None:  # type: ignore[no-untyped-def]
    _random_clinic(rt, clinic)
    period = make_period(start, end, group, clinic.portal.timezone)
    expected = _expected(rt, clinic, period)
    with rt.db.transaction() as s:
        got = {name: build_report(s, clinic.portal.id, name, period) for name in expected}
    rows = [*got["primary"].rows, *got["primary"].totals]
    assert [(r["period"], r["primary"], r["repeat"]) for r in rows] == [
        (label or "Итого", p, r) for label, p, r in expected["primary"]
    ]
    assert [[r["primary_pct"], r["repeat_pct"]] for r in rows] == [
        shares([p, r]) for _, p, r in expected["primary"]
    ]
    assert sum(r["primary"] for r in got["primary"].rows) > 0 and sum(r["repeat"] for r in rows) > 0
    assert (
        sorted(((r["period"], r["source"]), r["count"]) for r in got["sources"].rows) == expected["sources"]
    )
    conversion = [*got["conversion"].rows, *got["conversion"].totals]
    assert [
        (r["period"], r["calls"], r["booked"], r["booked_pct"], r["completed"], r["completed_pct"])
        for r in conversion
    ] == [(label or "Итого", *rest) for label, *rest in expected["conversion"]]
