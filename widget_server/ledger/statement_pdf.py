"""The account statement as an A4 PDF (выписка по лицевому счёту) to hand to the patient's relative.

Why WeasyPrint: the page is plain HTML and CSS from a Jinja2 template (`templates/statement.html`), so the
same template could serve as an HTML preview and a clinic's look can change without touching Python.
WeasyPrint lays text out with Pango (Cyrillic, «ё» and «₽» shaped properly, fonts embedded and subset)
and implements paged media: `@page` size, repeated table headers and "стр. N из M" counters. fpdf2 or
reportlab would need the table, wrapping and page breaks done by hand.

The cost is a system dependency: Pango (libpango-1.0-0, libpangoft2-1.0-0) and a Cyrillic font
(fonts-dejavu-core; without it the text comes out as boxes). So weasyprint is imported only when a PDF is
actually rendered: the rest of the app keeps working on a machine without Pango.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader

from ..models import Portal, StayAccount
from ..money import format_minor
from .statement import KIND_LABELS_RU, StatementRow
from .summary import StaySummary

__all__ = ["render_statement_pdf"]

_NO_WEASYPRINT = (
    "PDF rendering needs WeasyPrint and system Pango: "
    "apt-get install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core"
)


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("widget_server", "templates"), autoescape=True)


def _date(value: date | None) -> str:
    return value.strftime("%d.%m.%Y") if value else ""


def render_statement_pdf(
    portal: Portal,
    account: StayAccount,
    rows: list[StatementRow],
    summary: StaySummary,
    *,
    generated_at: datetime,
) -> bytes:
    """`rows` from `statement_rows`, `summary` from `stay_summary`; `generated_at` must be timezone-aware
    and is shown in the portal's timezone."""
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware")
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: the Python package is there, libpango is not
        raise RuntimeError(_NO_WEASYPRINT) from exc

    currency, locale = account.currency, portal.locale or "ru_RU"

    def money(minor: int) -> str:
        return format_minor(minor, currency, locale)

    seq_of = {row.entry_id: row.seq for row in rows}
    reversed_by = {row.reverses_entry_id: row.seq for row in rows if row.reverses_entry_id}
    table = []
    for row in rows:
        notes = [row.description] if row.description else []
        if row.reverses_entry_id:
            target = seq_of.get(row.reverses_entry_id)
            notes.insert(0, f"сторно операции № {target}" if target else "сторно операции")
        if row.entry_id in reversed_by:
            notes.append(f"сторнировано (№ {reversed_by[row.entry_id]})")
        table.append(
            {
                "seq": row.seq,
                "date": _date(row.entry_date),
                "label": KIND_LABELS_RU.get(row.kind, row.kind),
                "kind": row.kind,
                "reversed": row.entry_id in reversed_by,
                "description": "; ".join(notes),
                "credit": money(row.credit_minor) if row.credit_minor else "",
                "debit": money(row.debit_minor) if row.debit_minor else "",
                "balance": money(row.balance_minor),
                "negative": row.balance_minor < 0,
            }
        )

    forecast = summary.forecast
    paid_through = None
    if account.status == "open":
        paid_through = "не ограничено" if forecast.unlimited else _date(forecast.paid_through)
    html = (
        _environment()
        .get_template("statement.html")
        .render(
            clinic=portal.name,
            deal_id=account.deal_id,
            admission=_date(account.admission_date),
            discharge=_date(account.discharge_date),
            representative=account.representative_name,
            representative_phone=account.representative_phone,
            status="открыт" if account.status == "open" else "закрыт",
            generated=generated_at.astimezone(ZoneInfo(portal.timezone)).strftime("%d.%m.%Y %H:%M"),
            rows=table,
            total_credit=money(sum(r.credit_minor for r in rows)),
            total_debit=money(sum(r.debit_minor for r in rows)),
            balance=money(summary.balance_minor),
            in_debt=summary.balance_minor < 0,
            holds=money(summary.holds_minor) if summary.holds_minor else None,
            paid_through=paid_through,
        )
    )
    return HTML(string=html).write_pdf()
