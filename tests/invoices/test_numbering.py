"""Numbering under concurrency: issuers in parallel threads take consecutive numbers from the locked
counter — no gaps, no duplicates — and a rolled-back issue gives its number back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from sqlalchemy import select

from widget_server.invoices.counterparties import CounterpartyInput, create_counterparty
from widget_server.invoices.errors import InvoiceError
from widget_server.invoices.numbering import format_number
from widget_server.invoices.operations import DraftInput, LineInput, create_draft, issue
from widget_server.models import Invoice, Portal

TODAY = date(2025, 12, 15)


def _no_rates(day, source, target):  # type: ignore[no-untyped-def]
    raise AssertionError("single-currency invoices need no rate")


def make_drafts(rt, portal_id: int, count: int) -> list[int]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        portal = s.get(Portal, portal_id)
        payer = create_counterparty(s, portal, CounterpartyInput(kind="payer", name="Плательщик"), "test")
        ids = []
        for n in range(count):
            draft = create_draft(
                s,
                portal,
                str(n),
                DraftInput(
                    kind="patient",
                    counterparty_id=payer.id,
                    issue_date=TODAY,
                    lines=[LineInput(name="Консультация", quantity="1", unit_price="100.00")],
                ),
                "test",
                f"draft-{n}",
                TODAY,
            )
            ids.append(draft.id)
    return ids


def issue_one(rt, portal_id: int, invoice_id: int) -> str:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        portal = s.get(Portal, portal_id)
        return issue(s, portal, invoice_id, "test", TODAY, _no_rates).number


def test_parallel_issues_take_consecutive_numbers(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    ids = make_drafts(rt, clinic.id, 80)
    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = list(pool.map(lambda i: issue_one(rt, clinic.id, i), ids))
    assert len(set(numbers)) == 80
    assert sorted(numbers) == [format_number("СЧ", 2025, n) for n in range(1, 81)]


def test_a_failed_issue_gives_its_number_back(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    first, second = make_drafts(rt, clinic.id, 2)
    with pytest.raises(RuntimeError), rt.db.transaction() as s:
        issued = issue(s, s.get(Portal, clinic.id), first, "test", TODAY, _no_rates)
        assert issued.number == "СЧ-2025-000001"
        raise RuntimeError("the PDF could not be stored, say")
    assert issue_one(rt, clinic.id, second) == "СЧ-2025-000001"
    with rt.db.transaction() as s:
        assert s.get(Invoice, first).status == "draft"
        assert s.scalar(select(Invoice.number).where(Invoice.id == first)) is None


def test_issue_refused_consumes_no_number(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    first, second = make_drafts(rt, clinic.id, 2)
    with rt.db.transaction() as s:
        s.get(Invoice, first).issue_date = date(2026, 1, 1)  # in the future on TODAY
    with pytest.raises(InvoiceError), rt.db.transaction() as s:
        issue(s, s.get(Portal, clinic.id), first, "test", TODAY, _no_rates)
    assert issue_one(rt, clinic.id, second) == "СЧ-2025-000001"
