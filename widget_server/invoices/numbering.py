"""Gap-free numbers: `{series}-{year}-{seq:06}` from a counter row locked by the issuing transaction.

Not a database sequence: a sequence hands out a value even when the transaction rolls back, and tax
documents must not have holes. The counter row is read FOR UPDATE (PostgreSQL) or under the BEGIN
IMMEDIATE every SQLite writer already holds, incremented, and committed together with the document — so a
failed issue gives its number back. UNIQUE (portal, series, year, seq) on the documents is the last guard.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import InvoiceCounter

__all__ = ["format_number", "take_number"]


def format_number(series: str, year: int, seq: int) -> str:
    return f"{series}-{year}-{seq:06d}"


def _locked(session: Session, portal_id: int, series: str, year: int) -> InvoiceCounter | None:
    return session.scalar(
        select(InvoiceCounter)
        .where(
            InvoiceCounter.portal_id == portal_id,
            InvoiceCounter.series == series,
            InvoiceCounter.year == year,
        )
        .with_for_update()
    )


def take_number(session: Session, portal_id: int, series: str, year: int) -> tuple[int, str]:
    """The next (seq, number) in the series; valid only if the caller's transaction commits."""
    counter = _locked(session, portal_id, series, year)
    if counter is None:
        try:
            # The first number of a year: two issuers may both try to create the row; one wins.
            with session.begin_nested():
                session.add(InvoiceCounter(portal_id=portal_id, series=series, year=year, last_seq=0))
        except IntegrityError:
            pass
        counter = _locked(session, portal_id, series, year)
        assert counter is not None
    counter.last_seq += 1
    session.flush()
    return counter.last_seq, format_number(series, year, counter.last_seq)
