"""Each kind rendered to PDF: `pdftotext` shows the number, totals, amount in words, rate and its date.
Regeneration gives v2 from the frozen snapshot; v1 is still served with its checksum; `documents verify`
names a changed file."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.invoices.conftest import serve
from tests.invoices.helpers import ASSISTANCE, INSURER, PARTNER, PATIENT_PAYER, create, insurer_invoice
from widget_server.cli import cli

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")


def pdf_text(content: bytes, tmp_path: Path) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(content)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def _issue(finance, deal: str, body: dict) -> dict:  # type: ignore[no-untyped-def]
    response = finance.post(f"/api/v1/deals/{deal}/invoices", json={**body, "issue": True})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_insurer_invoice_in_eur_issued_in_rub(roles, frozen, cbr_http, tmp_path) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    serve(cbr_http, "14/12/2025", "2025-12-13")
    insurer = create(finance, INSURER)
    invoice = _issue(finance, "11", insurer_invoice(insurer["id"]))
    response = finance.get(f"/api/v1/invoices/{invoice['id']}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    text = " ".join(pdf_text(response.data, tmp_path).split())
    assert "СК-2025-000001 от 14.12.2025" in text
    assert "Курс ЦБ РФ на 13.12.2025: 1 EUR = 93,5412 ₽" in text
    assert "146 462,13 ₽" in text
    assert "Сто сорок шесть тысяч четыреста шестьдесят два рубля 13 копеек" in text
    assert "GOP-2025-1187" in text and "ДМС-77-0042135" in text
    assert "1 565,75 €" in text  # the total in the price currency
    assert "Без НДС" in text


def test_patient_assistance_and_partner_kinds_render(roles, frozen, tmp_path) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    payer = create(finance, PATIENT_PAYER)
    patient = _issue(
        finance,
        "12",
        {
            "kind": "patient",
            "counterparty_id": payer["id"],
            "issue_date": "2025-12-15",
            "details": {"patient_name": "Иванов И. И."},
            "lines": [
                {"name": "Консультация", "quantity": "1", "unit_price": "3500.00"},
                {
                    "name": "Услуги переводчика",
                    "quantity": "2",
                    "unit_price": "1200.00",
                    "vat_category": "taxed",
                },
            ],
        },
    )
    text = " ".join(pdf_text(finance.get(f"/api/v1/invoices/{patient['id']}.pdf").data, tmp_path).split())
    assert "СЧ-2025-000001" in text and "5 900,00 ₽" in text
    assert "В том числе НДС 20 %: 400,00 ₽" in text
    assert "Пять тысяч девятьсот рублей 00 копеек" in text

    assistance = create(finance, ASSISTANCE)
    asst = _issue(
        finance,
        "12",
        {
            "kind": "assistance",
            "counterparty_id": assistance["id"],
            "issue_date": "2025-12-15",
            "details": {"case_no": "EC-1", "insurer_name": "Allianz Care", "insured_name": "I. Ivanov"},
            "lines": [
                {"name": "Coordination fee", "quantity": "1", "unit_price": "200.00", "vat_category": "taxed"}
            ],
        },
    )
    text = " ".join(pdf_text(finance.get(f"/api/v1/invoices/{asst['id']}.pdf").data, tmp_path).split())
    assert "АК-2025-000001" in text and "240,00 €" in text and "НДС 20 %: 40,00 €" in text
    assert "Two hundred and forty euro 00 cents" in text

    partner = create(finance, PARTNER)
    part = _issue(
        finance,
        "12",
        {
            "kind": "partner_clinic",
            "counterparty_id": partner["id"],
            "issue_date": "2025-12-15",
            "details": {
                "partner_invoice_no": "77/12",
                "partner_invoice_date": "2025-12-11",
                "patient_name": "Иванов И. И.",
                "commission_percent": "10",
            },
            "lines": [{"name": "Анализы", "quantity": "1", "unit_price": "12500.00"}],
        },
    )
    text = " ".join(pdf_text(finance.get(f"/api/v1/invoices/{part['id']}.pdf").data, tmp_path).split())
    assert "ПК-2025-000001" in text and "№ 77/12 от 11.12.2025" in text
    assert "Итого к перечислению: 12 500,00 ₽" in text and "1 250,00 ₽" in text


def test_regeneration_is_v2_and_v1_still_served(rt, roles, frozen, tmp_path) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    payer = create(finance, PATIENT_PAYER)
    invoice = _issue(
        finance,
        "13",
        {
            "kind": "patient",
            "counterparty_id": payer["id"],
            "issue_date": "2025-12-15",
            "lines": [{"name": "Консультация", "quantity": "1", "unit_price": "3500.00"}],
        },
    )
    v1 = finance.get(f"/api/v1/invoices/{invoice['id']}.pdf")
    # Headers are latin-1: the Cyrillic number travels as RFC 5987 filename*, an ASCII name beside it.
    disposition = v1.headers["Content-Disposition"]
    disposition.encode("latin-1")
    assert disposition == (
        'inline; filename="SCh-2025-000001-v1.pdf"; '
        "filename*=UTF-8''%D0%A1%D0%A7-2025-000001-v1.pdf"
    )
    # Editing the counterparty after issue must not change what is printed: the snapshot is frozen.
    finance.patch(f"/api/v1/counterparties/{payer['id']}", json={"name": "Другое имя"})
    regenerated = finance.post(f"/api/v1/invoices/{invoice['id']}/documents")
    assert regenerated.status_code == 201
    assert regenerated.get_json()["version"] == 2
    v2 = finance.get(f"/api/v1/invoices/{invoice['id']}.pdf")
    assert v2.headers["X-Document-Version"] == "2"
    assert "Иванова Мария Петровна" in pdf_text(v2.data, tmp_path)
    again = finance.get(f"/api/v1/invoices/{invoice['id']}.pdf?version=1")
    assert again.data == v1.data
    assert again.headers["X-Document-SHA256"] == hashlib.sha256(v1.data).hexdigest()
    folder = finance.get("/api/v1/deals/13/documents").get_json()
    assert [d["version"] for d in folder] == [1, 2]
    assert folder[0]["template_version"] == folder[1]["template_version"]

    runner = CliRunner()
    ok = runner.invoke(cli, ["documents", "verify"], catch_exceptions=False)
    assert ok.exit_code == 0 and "2 documents checked, all intact" in ok.output
    files = sorted((Path(rt.settings.instance_path) / "documents").rglob("*.pdf"))
    assert [f.name for f in files] == ["СЧ-2025-000001-v1.pdf", "СЧ-2025-000001-v2.pdf"]
    files[0].write_bytes(files[0].read_bytes() + b"%tampered")
    bad = runner.invoke(cli, ["documents", "verify"])
    assert bad.exit_code == 1
    assert "СЧ-2025-000001-v1.pdf" in bad.output and "changed" in bad.output
    assert finance.get(f"/api/v1/invoices/{invoice['id']}.pdf?version=1").status_code == 409


def test_a_clinic_without_vat_prints_nds_ne_oblagaetsya(rt, clinic, roles, frozen, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from widget_server.models import Portal

    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        portal.settings = {**portal.settings, "invoices": {**portal.settings["invoices"], "vat_payer": False}}
    finance = roles["finance"]
    payer = create(finance, PATIENT_PAYER)
    invoice = _issue(
        finance,
        "14",
        {
            "kind": "patient",
            "counterparty_id": payer["id"],
            "lines": [
                {"name": "Трансфер", "quantity": "1", "unit_price": "2500.00", "vat_category": "taxed"}
            ],
        },
    )
    assert invoice["vat"] == "0.00" and invoice["total"] == "2500.00"
    text = " ".join(pdf_text(finance.get(f"/api/v1/invoices/{invoice['id']}.pdf").data, tmp_path).split())
    assert "НДС не облагается" in text


def test_no_cyrillic_font_is_a_clear_start_up_error(settings, rt, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess as sp

    from widget_server import create_app
    from widget_server.invoices import render

    render.ensure_cyrillic_font.cache_clear()
    monkeypatch.setattr(
        render.subprocess, "run", lambda *a, **k: sp.CompletedProcess(a, 0, stdout="", stderr="")
    )
    try:
        with pytest.raises(render.NoCyrillicFont, match="fonts-dejavu-core"):
            create_app(settings, rt=rt)
    finally:
        render.ensure_cyrillic_font.cache_clear()


def test_clinic_images_are_embedded_and_change_the_template_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import base64
    import zlib

    from widget_server.invoices.render import data_uri, render_invoice_pdf, template_version

    def png(r: int, g: int, b: int) -> bytes:
        def chunk(kind: bytes, body: bytes) -> bytes:
            crc = zlib.crc32(kind + body) & 0xFFFFFFFF
            return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

        raw = b"".join(b"\x00" + bytes((r, g, b)) * 8 for _ in range(8))
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", (8).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00")
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b"")
        )

    snapshot = {
        "number": "СЧ-2025-000009",
        "kind": "patient",
        "title": "Счёт на оплату",
        "language": "ru",
        "issue_date": "2025-12-15",
        "due_date": "2026-01-14",
        "price_currency": "RUB",
        "invoice_currency": "RUB",
        "rate_text": None,
        "vat_mode": "included",
        "vat_payer": True,
        "vat_rate": "20",
        "vat_text": None,
        "exempt_basis": "Без НДС",
        "details": {},
        "clinic": {"legal_name": "Клиника"},
        "counterparty": {"name": "Плательщик", "requisites": {}},
        "lines": [
            {
                "position": 1,
                "name": "Консультация",
                "code": None,
                "service_date": None,
                "quantity": "1",
                "unit_price": "100.00",
                "amount": "100.00",
                "converted": "100.00",
                "vat_category": "exempt",
                "vat": "0.00",
            }
        ],
        "price_total": "100.00",
        "net": "100.00",
        "vat": "0.00",
        "total": "100.00",
        "total_in_words": "Сто рублей 00 копеек",
    }
    images = {"logo": data_uri(png(200, 0, 0)), "stamp": base64.b64encode(png(0, 0, 200)).decode()}
    images["stamp"] = data_uri(base64.b64decode(images["stamp"]))
    plain, plain_version = render_invoice_pdf(snapshot)
    with_images, images_version = render_invoice_pdf(snapshot, images)
    assert plain_version == template_version("patient") != images_version
    assert with_images.count(b"/Subtype /Image") >= 2 > plain.count(b"/Subtype /Image")
