"""An issued invoice's frozen snapshot → A4 PDF: a Jinja template per kind, laid out by WeasyPrint.

WeasyPrint for the reasons `ledger/statement_pdf.py` gives (HTML/CSS, Pango shaping of Cyrillic and «₽»,
paged media). Rendering reads only the snapshot and the clinic's images, so a regeneration years later
prints what was issued. The template version is the sha256 of the kind's template, the base template,
the CSS and the images, so a document records exactly which layout produced it.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from babel.numbers import format_currency, format_decimal
from jinja2 import Environment, FileSystemLoader

from .kinds import get_kind

__all__ = [
    "TEMPLATES",
    "NoCyrillicFont",
    "ensure_cyrillic_font",
    "render_invoice_pdf",
    "template_for",
    "template_version",
]

TEMPLATES = Path(__file__).resolve().parent / "templates"

_NO_WEASYPRINT = (
    "PDF rendering needs WeasyPrint and system Pango: "
    "apt-get install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core"
)


class NoCyrillicFont(RuntimeError):
    pass


@cache
def ensure_cyrillic_font() -> str:
    """The family fontconfig offers for Russian; without one every letter would print as a box, so fail
    loudly instead (checked at the first render and by `clinicbridge documents verify`)."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        raise NoCyrillicFont("fontconfig (fc-list) is missing: apt-get install fontconfig fonts-dejavu-core")
    listed = subprocess.run(
        [fc_list, ":lang=ru", "family"], capture_output=True, text=True, check=False
    ).stdout
    families = [line.split(",")[0].strip() for line in listed.splitlines() if line.strip()]
    if not families:
        raise NoCyrillicFont("no font with Cyrillic is installed: apt-get install fonts-dejavu-core")
    return "DejaVu Sans" if "DejaVu Sans" in families else families[0]


@cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)


def template_for(kind_code: str) -> str:
    kind = get_kind(kind_code)
    name = (kind.template if kind else "") or f"invoice_{kind_code}.html"
    return name if (TEMPLATES / name).exists() else "base.html"


def template_version(kind_code: str, images: dict[str, str] | None = None) -> str:
    digest = hashlib.sha256()
    for name in (template_for(kind_code), "base.html", "invoice.css"):
        digest.update(name.encode())
        digest.update((TEMPLATES / name).read_bytes())
    for name, uri in sorted((images or {}).items()):
        digest.update(name.encode())
        digest.update(uri.encode())
    return digest.hexdigest()


_LABELS = {
    "of": ("от", "of"),
    "pay_by": ("Оплатить до", "Payable by"),
    "pay_partner_by": ("Оплатить клинике-партнёру до", "Pay the partner clinic by"),
    "payer": ("Плательщик", "Payer"),
    "payee": ("Получатель платежа", "Payee"),
    "insurer": ("Страховая компания", "Insurer"),
    "assistance": ("Ассистирующая компания", "Assistance company"),
    "name": ("Наименование", "Description"),
    "code": ("Код", "Code"),
    "date": ("Дата", "Date"),
    "qty": ("Кол-во", "Qty"),
    "price": ("Цена", "Price"),
    "amount": ("Сумма", "Amount"),
    "vat": ("НДС", "VAT"),
    "price_total": ("Итого в валюте цены:", "Total in the price currency:"),
    "net": ("Без НДС:", "Net of VAT:"),
    "total": ("Итого к оплате:", "Total due:"),
    "total_out": ("Итого к перечислению:", "Total to transfer:"),
    "director": ("Руководитель", "Director"),
    "accountant": ("Главный бухгалтер", "Chief accountant"),
    "policy": ("Полис", "Policy"),
    "gop": ("Гарантийное письмо (GOP)", "Guarantee of payment"),
    "insured": ("Застрахованный", "Insured person"),
    "case": ("Номер случая", "Case no."),
    "period": ("Период лечения", "Treatment period"),
    "assistance_case": ("Номер случая ассистанса", "Assistance case no."),
    "partner_invoice": ("Счёт клиники-партнёра", "Partner clinic invoice"),
    "patient": ("Пациент", "Patient"),
    "commission": ("Комиссия", "Commission"),
}


def labels(language: str) -> dict[str, str]:
    """Russian; for an English-speaking counterparty Russian first, English second («Полис / Policy»)."""
    if language == "en":
        return {key: f"{ru} / {en}" if key != "of" else ru for key, (ru, en) in _LABELS.items()}
    return {key: ru for key, (ru, _en) in _LABELS.items()}


def _ru_date(value: str | None) -> str | None:
    return date.fromisoformat(value).strftime("%d.%m.%Y") if value else None


def _amount(text: str) -> str:
    return format_decimal(Decimal(text), format="#,##0.00", locale="ru_RU")


def _money(text: str, currency: str) -> str:
    return format_currency(Decimal(text), currency, locale="ru_RU")


def _context(snapshot: dict[str, Any]) -> dict[str, Any]:
    s = dict(snapshot)
    s["issue_date_ru"] = _ru_date(s["issue_date"])
    s["due_date_ru"] = _ru_date(s["due_date"])
    s["converted"] = s["price_currency"] != s["invoice_currency"]
    details = dict(s.get("details") or {})
    for key in list(details):
        if key.endswith(("_date", "_from", "_to")) and isinstance(details[key], str):
            try:
                details[f"{key}_ru"] = _ru_date(details[key])
            except ValueError:
                details[f"{key}_ru"] = details[key]
    s["details"] = details
    pccy, ccy = s["price_currency"], s["invoice_currency"]
    lines = []
    for line in s["lines"]:
        row = dict(line)
        row["service_date_ru"] = _ru_date(line.get("service_date"))
        row["quantity_ru"] = line["quantity"].replace(".", ",")
        row["unit_price_ru"] = _amount(line["unit_price"])
        row["amount_ru"] = _amount(line["amount"])
        row["converted_ru"] = _amount(line["converted"])
        row["vat_label"] = (
            "без НДС" if line["vat_category"] == "exempt" or not s["vat_payer"] else _amount(line["vat"])
        )
        lines.append(row)
    s["lines"] = lines
    s["has_exempt"] = any(line["vat_category"] == "exempt" for line in lines)
    s["price_total_display"] = _money(s["price_total"], pccy)
    s["net_display"] = _money(s["net"], ccy)
    vat = Decimal(s["vat"])
    s["vat_display"] = _money(s["vat"], ccy) if vat else None
    if not s["vat_payer"]:
        s["vat_line_label"] = "НДС не облагается"
    elif s["vat_mode"] == "on_top":
        s["vat_line_label"] = f"НДС {s['vat_rate']} %:"
    else:
        s["vat_line_label"] = f"В том числе НДС {s['vat_rate']} %:"
    s["total_display"] = _money(s["total"], ccy)
    percent = details.get("commission_percent")
    if percent:
        commission = (Decimal(s["total"]) * Decimal(str(percent)) / 100).quantize(Decimal("0.01"))
        s["commission_display"] = _money(str(commission), ccy)
    return s


def render_html(
    snapshot: dict[str, Any], images: dict[str, str] | None = None, *, inline_css: bool = True
) -> str:
    """The invoice as HTML (with its CSS inline, for a browser preview)."""
    css = (TEMPLATES / "invoice.css").read_text(encoding="utf-8") if inline_css else ""
    return (
        _environment()
        .get_template(template_for(snapshot["kind"]))
        .render(s=_context(snapshot), L=labels(snapshot.get("language", "ru")), css=css, images=images or {})
    )


@cache
def _stylesheet() -> tuple[Any, Any]:
    # Parsed once per process with its font configuration: re-parsing the CSS and re-scanning fonts
    # was about a tenth of each render.
    from weasyprint import CSS
    from weasyprint.text.fonts import FontConfiguration

    fonts = FontConfiguration()
    return CSS(string=(TEMPLATES / "invoice.css").read_text(encoding="utf-8"), font_config=fonts), fonts


def render_invoice_pdf(snapshot: dict[str, Any], images: dict[str, str] | None = None) -> tuple[bytes, str]:
    """(PDF bytes, template version). `images`: logo / signature / stamp as data: URIs."""
    ensure_cyrillic_font()
    try:
        from weasyprint import HTML

        stylesheet, fonts = _stylesheet()
    except (ImportError, OSError) as exc:  # OSError: the Python package is there, libpango is not
        raise RuntimeError(_NO_WEASYPRINT) from exc
    html = render_html(snapshot, images, inline_css=False)
    pdf = HTML(string=html).write_pdf(stylesheets=[stylesheet], font_config=fonts)
    return pdf, template_version(snapshot["kind"], images)


def data_uri(content: bytes, mime_type: str = "image/png") -> str:
    return f"data:{mime_type};base64,{base64.b64encode(content).decode()}"
