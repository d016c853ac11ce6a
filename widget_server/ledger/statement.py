"""Account statement (выписка по счёту): every entry with its running balance, for the relative too."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import ExpenseArticle, LedgerEntry, StayAccount
from ..money import minor_to_decimal

__all__ = ["KIND_LABELS_RU", "StatementRow", "statement_csv", "statement_rows"]

KIND_LABELS_RU = {
    "deposit": "Пополнение",
    "daily_charge": "Ежедневное списание",
    "charge": "Разовое списание",
    "purchase": "Закупка",
    "reversal": "Сторно",
    "refund": "Возврат",
}


@dataclass(frozen=True)
class StatementRow:
    entry_id: int
    seq: int
    entry_date: date
    kind: str
    description: str
    credit_minor: int
    debit_minor: int
    balance_minor: int
    actor: str
    reverses_entry_id: int | None


def _description(entry: LedgerEntry, articles: dict[int, str]) -> str:
    parts: list[str] = []
    if entry.kind == "daily_charge" and entry.service_date:
        parts.append(f"за {entry.service_date.strftime('%d.%m.%Y')}")
    if entry.article_id in articles:
        parts.append(articles[entry.article_id])  # type: ignore[index]
    if entry.reason:
        parts.append(entry.reason)
    if entry.payer:
        parts.append(f"плательщик: {entry.payer}")
    return "; ".join(parts)


def statement_rows(
    session: Session, account: StayAccount, kinds: set[str] | None = None
) -> list[StatementRow]:
    """The running balance counts every entry (each stores it); `kinds` only filters which rows are shown."""
    statement = select(LedgerEntry).where(LedgerEntry.account_id == account.id).order_by(LedgerEntry.seq)
    if kinds:
        statement = statement.where(LedgerEntry.kind.in_(sorted(kinds)))
    entries = list(session.scalars(statement))
    articles = {
        a.id: a.name
        for a in session.scalars(select(ExpenseArticle).where(ExpenseArticle.portal_id == account.portal_id))
    }
    rows: list[StatementRow] = []
    for entry in entries:
        rows.append(
            StatementRow(
                entry_id=entry.id,
                seq=entry.seq,
                entry_date=entry.entry_date,
                kind=entry.kind,
                description=_description(entry, articles),
                credit_minor=entry.amount_minor if entry.sign > 0 else 0,
                debit_minor=entry.amount_minor if entry.sign < 0 else 0,
                balance_minor=entry.balance_after_minor,
                actor=entry.actor,
                reverses_entry_id=entry.reverses_entry_id,
            )
        )
    return rows


def statement_csv(rows: list[StatementRow], currency: str) -> str:
    """Semicolon-separated with a decimal comma and a BOM: what Russian Excel opens correctly."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(["№", "Дата", "Операция", "Описание", "Приход", "Расход", "Остаток", "Кто"])

    def amount(minor: int) -> str:
        return str(minor_to_decimal(minor, currency)).replace(".", ",") if minor else ""

    for row in rows:
        writer.writerow(
            [
                row.seq,
                row.entry_date.strftime("%d.%m.%Y"),
                KIND_LABELS_RU[row.kind],
                row.description,
                amount(row.credit_minor),
                amount(row.debit_minor),
                str(minor_to_decimal(row.balance_minor, currency)).replace(".", ","),
                row.actor,
            ]
        )
    return buffer.getvalue()
