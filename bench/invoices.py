"""Invoices: PDF render latency per kind, and gap-free numbering under 8 concurrent issuers.

1. Render: each kind's issued snapshot (seed-001-shaped lines, the insurer's in EUR → RUB) rendered
   `--renders` times with WeasyPrint; p50/p95/max per kind (floor: p95 ≤ 300 ms on this machine).
2. Numbering: `--invoices` drafts issued by `--workers` threads, each issue its own transaction taking
   the next number from the locked counter row, on SQLite (BEGIN IMMEDIATE) and on a throw-away
   PostgreSQL 15 (SELECT … FOR UPDATE); prints wall time, issues/s, gaps and duplicates (floor: 0 and 0).

    .venv/bin/python bench/invoices.py [--renders 30] [--invoices 1000] [--workers 8] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _support import PgCluster, percentile
from sqlalchemy import select

from widget_server.db import Database
from widget_server.invoices.counterparties import CounterpartyInput, create_counterparty
from widget_server.invoices.operations import DraftInput, LineInput, create_draft, issue
from widget_server.invoices.rates import Quote
from widget_server.invoices.render import render_invoice_pdf
from widget_server.migrations import upgrade
from widget_server.models import Invoice, Portal
from widget_server.portals import create_portal

TODAY = date(2025, 12, 15)
EUR_RUB = Quote(Decimal("93.5412"), date(2025, 12, 13), "EUR", "RUB")

CLINIC = {
    "legal_name": "ООО «Клиника Здоровье»",
    "inn": "7707083893",
    "kpp": "773601001",
    "address": "123456, г. Москва, ул. Лечебная, д. 1",
    "bank_name": "ПАО Сбербанк",
    "bik": "044525225",
    "account": "40702810938000000001",
}
RU_REQUISITES = {
    "legal_name": "АО «СК Медстрах»",
    "address": "115035, г. Москва, ул. Садовническая, д. 5",
    "inn": "7710030411",
    "kpp": "770501001",
    "bik": "044525225",
    "account": "40702810938000000001",
}
PARTNER_REQUISITES = {
    **RU_REQUISITES,
    "legal_name": "ООО «Лаборатория Гемотест-Партнёр»",
    "inn": "7702070139",
}
FOREIGN = {"legal_name": "EuroCross Assistance GmbH", "address": "Frankfurt am Main", "country": "DE"}


def _lines(count: int, price: str) -> list[LineInput]:
    return [
        LineInput(
            name=f"Медицинская услуга № {n + 1}: консультация специалиста",
            code=f"B01.{n:03d}",
            service_date=date(2025, 12, 8 + n % 5),
            quantity="1",
            unit_price=price,
            vat_category="taxed" if n % 4 == 3 else "exempt",
        )
        for n in range(count)
    ]


KINDS = {
    "patient": ("payer", {}, None, "RUB", {}, _lines(6, "3500.00")),
    "insurer": (
        "insurer",
        RU_REQUISITES,
        "EUR",
        "RUB",
        {
            "policy_no": "ДМС-77-0042135",
            "gop_no": "GOP-2025-1187",
            "gop_date": "2025-12-07",
            "insured_name": "Ахмедов Рустам Каримович",
            "case_no": "MS-25-3310",
            "period_from": "2025-12-08",
            "period_to": "2025-12-12",
        },
        _lines(12, "150.00"),
    ),
    "assistance": (
        "assistance",
        FOREIGN,
        None,
        "EUR",
        {"case_no": "EC-99812", "insurer_name": "Allianz Care", "insured_name": "Rustam Akhmedov"},
        _lines(8, "200.00"),
    ),
    "partner_clinic": (
        "partner_clinic",
        PARTNER_REQUISITES,
        None,
        "RUB",
        {
            "partner_invoice_no": "77/12",
            "partner_invoice_date": "2025-12-11",
            "patient_name": "Ахмедов Р. К.",
        },
        _lines(4, "12500.00"),
    ),
}


def _database(url: str) -> tuple[Database, int]:
    upgrade(url)
    db = Database(url)
    with db.transaction() as s:
        portal = create_portal(
            s,
            kind="sandbox",
            name="Клиника",
            timezone="Europe/Moscow",
            currency="RUB",
            slug="bench",
            settings={"invoices": {"clinic": CLINIC}},
        )
        return db, portal.id


def snapshots(db: Database, portal_id: int) -> dict[str, dict]:
    result = {}
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        for kind, (cp_kind, requisites, price_ccy, ccy, details, lines) in KINDS.items():
            counterparty = create_counterparty(
                s,
                portal,
                CounterpartyInput(
                    kind=cp_kind,
                    name=requisites.get("legal_name", "Плательщик"),
                    currency=ccy,
                    language="en" if ccy == "EUR" else "ru",
                    requisites=requisites,
                ),
                "bench",
            )
            draft = create_draft(
                s,
                portal,
                "1",
                DraftInput(
                    kind=kind,
                    counterparty_id=counterparty.id,
                    price_currency=price_ccy,
                    invoice_currency=ccy,
                    issue_date=date(2025, 12, 14),
                    details=details,
                    lines=lines,
                ),
                "bench",
                f"snap-{kind}",
                TODAY,
            )
            result[kind] = issue(s, portal, draft.id, "bench", TODAY, lambda *_: EUR_RUB).snapshot
    return result


def bench_render(renders: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db, portal_id = _database(f"sqlite:///{tmp}/render.sqlite3")
        snaps = snapshots(db, portal_id)
        db.dispose()
    for snapshot in snaps.values():
        render_invoice_pdf(snapshot)  # warm-up: fonts, the parsed stylesheet, each kind's compiled template
    load = os.getloadavg()[0]
    print(f"render ({renders} per kind, WeasyPrint, A4; load average {load:.1f} on {os.cpu_count()} CPUs):")
    for kind, snapshot in snaps.items():
        times, cpu = [], []
        size = 0
        for _ in range(renders):
            started, started_cpu = time.perf_counter(), time.process_time()
            pdf, _version = render_invoice_pdf(snapshot)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            size = len(pdf)
        # CPU time beside wall time: on a shared machine the wall figure includes waiting for a core.
        print(
            f"  {kind:15} p50 {statistics.median(times):6.1f} ms  p95 {percentile(times, 0.95):6.1f} ms"
            f"  max {max(times):6.1f} ms  | CPU p50 {statistics.median(cpu):6.1f} ms"
            f" p95 {percentile(cpu, 0.95):6.1f} ms  | lines {len(snapshot['lines']):2}  {size / 1024:.0f} KiB"
        )


def bench_numbering(label: str, url: str, count: int, workers: int) -> None:
    db, portal_id = _database(url)
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        payer = create_counterparty(s, portal, CounterpartyInput(kind="payer", name="Плательщик"), "bench")
        ids = [
            create_draft(
                s,
                portal,
                str(n % 50),
                DraftInput(
                    kind="patient", counterparty_id=payer.id, issue_date=TODAY, lines=_lines(2, "100.00")
                ),
                "bench",
                f"n-{n}",
                TODAY,
            ).id
            for n in range(count)
        ]

    def issue_one(invoice_id: int) -> int:
        with db.transaction() as s:
            return issue(s, s.get(Portal, portal_id), invoice_id, "bench", TODAY, lambda *_: EUR_RUB).seq or 0

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        seqs = list(pool.map(issue_one, ids))
    elapsed = time.perf_counter() - started
    with db.transaction() as s:
        stored = sorted(s.scalars(select(Invoice.seq).where(Invoice.portal_id == portal_id)))
    db.dispose()
    expected = set(range(1, count + 1))
    gaps = len(expected - set(stored))
    duplicates = len(stored) - len(set(stored))
    print(
        f"numbering {label:10}: {count} issued by {workers} workers in {elapsed:.2f} s"
        f" ({count / elapsed:.0f}/s); max seq {max(seqs)}; gaps {gaps}; duplicates {duplicates}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=30)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    bench_render(args.renders)
    with tempfile.TemporaryDirectory() as tmp:
        bench_numbering("SQLite", f"sqlite:///{tmp}/numbers.sqlite3", args.invoices, args.workers)
    if not args.no_postgres:
        with PgCluster() as cluster:
            bench_numbering("PostgreSQL", cluster.url, args.invoices, args.workers)


if __name__ == "__main__":
    main()
