"""The PDF statement a relative takes home: real stay through the API, text checked with poppler."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from sqlalchemy import select

from widget_server.jobs.ledger import run_daily_charges
from widget_server.ledger import stay_summary
from widget_server.ledger.statement import statement_rows
from widget_server.ledger.statement_pdf import render_statement_pdf
from widget_server.models import LedgerEntry, Portal, StayAccount

pytestmark = pytest.mark.skipif(
    not (shutil.which("pdftotext") and shutil.which("pdfinfo")),
    reason="needs poppler-utils (apt-get install poppler-utils)",
)


def pdf_text(pdf: bytes, tmp_path) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "statement.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True)
    return out.stdout.decode("utf-8").replace("\xa0", " ")


def pdf_pages(pdf: bytes, tmp_path) -> int:  # type: ignore[no-untyped-def]
    path = tmp_path / "pages.pdf"
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, text=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)$", info, re.M).group(1))  # type: ignore[union-attr]


def render(rt, clinic, frozen, deal="601"):  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        account = s.scalars(
            select(StayAccount).where(StayAccount.portal_id == portal.id, StayAccount.deal_id == deal)
        ).one()
        summary = stay_summary(s, portal, account)
        return render_statement_pdf(
            portal,
            account,
            statement_rows(s, account),
            summary,
            generated_at=frozen.now,
        )


def squash(text: str) -> str:
    return re.sub(r"[ \t]+", " ", text)


def test_statement_pdf_of_a_stay(rt, clinic, roles, catalogue, frozen, tmp_path):  # type: ignore[no-untyped-def]
    finance, admin = roles["finance"], roles["admin"]
    frozen.set_local("2026-11-28 11:00")
    admitted = finance.post("/api/v1/deals/601/stay", key="admit-601", json={
        "admission_date": "2026-11-28", "tariff_id": catalogue["standard"],
        "representative": {"name": "Иванова Мария (дочь)", "phone": "8 (916) 123-45-67"},
        "deposit": {"amount": "50000.00", "method": "cash", "payer": "Иванова Мария"},
    })  # fmt: skip
    assert admitted.status_code == 201, admitted.get_json()

    frozen.set_local("2026-12-02 10:00")
    run_daily_charges(now=frozen.now)  # 28 Nov .. 2 Dec: 5 × 3 500
    dressing = finance.post(
        "/api/v1/deals/601/stay/charges",
        key="dressing-1",
        json={
            "amount": "1500.00",
            "article_id": catalogue["dressing"],
            "reason": "перевязка <после> осмотра",
        },
    )
    assert dressing.status_code == 201
    wrong = finance.post(
        "/api/v1/deals/601/stay/charges",
        key="wrong-1",
        json={"amount": "2000.00", "article_id": catalogue["drugs"], "reason": "ошибочно"},
    ).get_json()
    reversal = admin.post(
        f"/api/v1/deals/601/stay/entries/{wrong['entry']['id']}/reversal",
        key="rev-1",
        json={"reason": "списано не тому пациенту"},
    )
    assert reversal.status_code == 201

    # While the stay is open the statement says how far it is paid.
    open_text = squash(pdf_text(render(rt, clinic, frozen), tmp_path))
    assert "Остаток на счёте 31 000,00 ₽" in open_text
    assert "Оплачено по 10.12.2026" in open_text
    assert "Дата выписки" not in open_text

    frozen.set_local("2026-12-05 16:00")
    discharged = finance.post(
        "/api/v1/deals/601/stay/discharge",
        key="out-1",
        json={"discharge_date": "2026-12-05", "refund_method": "card"},
    )
    assert discharged.status_code == 200, discharged.get_json()

    pdf = render(rt, clinic, frozen)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf, tmp_path)
    flat = squash(text)

    assert "Выписка по лицевому счёту" in flat
    assert "Клиника «Здоровье»" in flat
    assert "№ 601" in flat
    assert "Дата поступления 28.11.2026" in flat
    assert "Дата выписки 05.12.2026" in flat
    assert "Иванова Мария (дочь), +79161234567" in flat
    assert "Сформирована 05.12.2026 16:00" in flat  # Moscow time, not UTC
    for header in ("№", "Дата", "Операция", "Описание", "Приход", "Расход", "Остаток"):
        assert header in flat
    # Cyrillic came through as text, not boxes or mojibake; each operation is labelled.
    for label in ("Пополнение", "Ежедневное списание", "Разовое списание", "Сторно", "Возврат"):
        assert label in flat, label
    assert "<после>" in flat  # escaped in the HTML, shown literally
    assert "сторно операции № 8" in flat and "сторнировано (№ 9)" in flat

    lines = [squash(line).strip() for line in text.splitlines()]
    assert any(
        line.startswith("1 28.11.2026 Пополнение") and "50 000,00 ₽ 50 000,00 ₽" in line for line in lines
    )
    assert any("за 02.12.2026" in line and "3 500,00 ₽ 32 500,00 ₽" in line for line in lines)
    assert any("Разовое списание" in line and "1 500,00 ₽ 31 000,00 ₽" in line for line in lines)
    assert any(line.startswith("9 02.12.2026 Сторно") and "2 000,00 ₽ 31 000,00 ₽" in line for line in lines)
    assert any("Возврат" in line and "24 000,00 ₽ 0,00 ₽" in line for line in lines)
    # Totals: 50 000 + 2 000 in; 7 × 3 500 + 1 500 + 2 000 + 24 000 out.
    assert "Итого за период 52 000,00 ₽ 52 000,00 ₽" in flat
    assert "Остаток на счёте 0,00 ₽" in flat
    assert "Оплачено по" not in flat  # closed: nothing to forecast
    assert "стр. 1 из 1" in flat


def test_long_statement_spans_pages_with_numbered_footer(rt, clinic, roles, catalogue, frozen, tmp_path):  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    frozen.set_local("2026-08-01 11:00")
    admitted = finance.post("/api/v1/deals/602/stay", key="admit-602", json={
        "admission_date": "2026-08-01", "tariff_id": catalogue["standard"],
        "deposit": {"amount": "10000.00", "method": "cash", "payer": "Иванова Мария"},
    })  # fmt: skip
    assert admitted.status_code == 201
    for n in range(9):
        topped = finance.post(
            "/api/v1/deals/602/stay/deposits", key=f"top-{n}", json={"amount": "10000.00", "method": "card"}
        )
        assert topped.status_code == 201, topped.get_json()
    frozen.set_local("2026-11-18 10:00")
    run_daily_charges(now=frozen.now)  # 1 Aug .. 18 Nov: 110 days, far beyond the 100 000 paid

    pdf = render(rt, clinic, frozen, deal="602")
    with rt.db.transaction() as s:
        assert s.query(LedgerEntry).count() == 120
    pages = pdf_pages(pdf, tmp_path)
    assert pages > 1
    flat = squash(pdf_text(pdf, tmp_path))
    assert f"стр. 1 из {pages}" in flat and f"стр. {pages} из {pages}" in flat
    assert flat.count("Приход") == pages  # the table header repeats on every page
    assert "за 18.11.2026" in flat
    assert "Итого за период 100 000,00 ₽ 385 000,00 ₽" in flat
    assert "Задолженность -285 000,00 ₽" in flat


def test_without_weasyprint_the_error_says_what_to_install(rt, clinic, catalogue, roles, frozen, monkeypatch):  # type: ignore[no-untyped-def]
    roles["finance"].post("/api/v1/deals/603/stay", key="admit-603", json={
        "admission_date": "2026-11-28", "tariff_id": catalogue["standard"],
    })  # fmt: skip
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint → ImportError
    hint = "apt-get install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core"
    with pytest.raises(RuntimeError, match=re.escape(hint)):
        render(rt, clinic, frozen, deal="603")
