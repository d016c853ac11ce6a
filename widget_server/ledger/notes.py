"""The wording of a ledger entry's note in the deal's feed.

The request that posts an entry queues only the facts (`ledger_note` in the `add_note` job's payload): what
a later rename or edit could change is captured then, while wording them (Babel's currency formatting, the
dearest part) waits for the job that sends the note, outside the account's write transaction.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from ..money import format_minor

__all__ = ["LEDGER_NOTE", "UNLIMITED", "feed_date", "note_text", "word_ledger_note"]

LEDGER_NOTE = "ledger_note"
"""The payload key of a ledger note's facts; other `add_note` payloads carry a ready `text`."""
UNLIMITED = "unlimited"
"""`paid_through` of a stay whose daily rate is zero: the balance does not limit it."""

_TITLES = {
    "deposit": "Пополнение",
    "daily_charge": "Ежедневное списание",
    "charge": "Списание",
    "purchase": "Закупка",
    "refund": "Возврат остатка",
}
_METHODS = {"cash": "наличные", "card": "карта", "transfer": "перевод", "insurance": "страховая"}


def feed_date(day: date) -> str:
    """A date as Russian readers write it: 14.12.2026."""
    return day.strftime("%d.%m.%Y")


def word_ledger_note(facts: dict[str, Any]) -> str:
    """The feed note of one entry from its facts: what, how much, why, the balance right after it, and
    for the latest entry of an open stay the forecast that was true when it was posted."""
    currency, locale = facts["currency"], facts["locale"]
    if facts["kind"] == "reversal":
        title = f"Сторно записи №{facts['reversed_seq']}"
    else:
        title = _TITLES[facts["kind"]]
    head = f"{title} {format_minor(facts['amount_minor'], currency, locale)}"
    if facts.get("article") is not None:
        head += f" — {facts['article']}"
    if facts["kind"] == "daily_charge" and facts.get("service_date"):
        head += f" за {feed_date(date.fromisoformat(facts['service_date']))}"
    parts = [head]
    if facts.get("method"):
        parts.append(f"Способ: {_METHODS.get(facts['method'], facts['method'])}")
    if facts.get("payer"):
        parts.append(f"Плательщик: {facts['payer']}")
    if facts.get("reason"):
        parts.append(f"Основание: {facts['reason']}")
    parts.append(f"Баланс: {format_minor(facts['balance_after_minor'], currency, locale)}")
    paid_through = facts.get("paid_through")
    if paid_through == UNLIMITED:
        parts.append("Срок пребывания не ограничен балансом")
    elif paid_through:
        parts.append(f"Оплачено по {feed_date(date.fromisoformat(paid_through))}")
    return ". ".join(parts)


def note_text(payload: dict[str, Any]) -> str:
    """The text an `add_note` job sends: a ledger note worded now, any other (and a ledger note queued
    before the facts were, which still has its text) as it was queued."""
    if "text" in payload:
        return payload["text"]
    return word_ledger_note(payload[LEDGER_NOTE])
