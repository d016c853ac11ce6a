"""Recompute every account's hash chain and running balance, and name the first entry that does not verify.

The stored running balance (`balance_after_minor`) is derived data outside the hash, so that the hashes of
entries written before it existed stay valid; it is checked against the sum of the entries up to it instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import LedgerEntry
from .chain import CHAINED_FIELDS, GENESIS, entry_hash

__all__ = ["ChainBreak", "verify_chains"]


@dataclass(frozen=True)
class ChainBreak:
    account_id: int
    entry_id: int
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"account {self.account_id}: entry {self.entry_id} (seq {self.seq}) {self.reason}"


def verify_chains(session: Session, portal_id: int | None = None) -> tuple[int, list[ChainBreak]]:
    """(entries checked, first break per account). Streams entries in (account, seq) order."""
    statement = select(LedgerEntry).order_by(LedgerEntry.account_id, LedgerEntry.seq)
    if portal_id is not None:
        statement = statement.where(LedgerEntry.portal_id == portal_id)
    breaks: list[ChainBreak] = []
    broken_accounts: set[int] = set()
    account, expected_prev, expected_seq, running, checked = None, GENESIS, 1, 0, 0
    for entry in session.scalars(statement.execution_options(yield_per=2000)):
        if entry.account_id != account:
            account, expected_prev, expected_seq, running = entry.account_id, GENESIS, 1, 0
        checked += 1
        running += entry.sign * entry.amount_minor
        if entry.account_id in broken_accounts:
            continue
        reason = None
        if entry.seq != expected_seq:
            reason = f"has seq {entry.seq}, expected {expected_seq} (an entry is missing or reordered)"
        elif entry.prev_hash != expected_prev:
            reason = "does not point at its predecessor's hash"
        elif entry_hash(entry.prev_hash, {n: getattr(entry, n) for n in CHAINED_FIELDS}) != entry.hash:
            reason = "content does not match its hash (edited after posting)"
        elif entry.balance_after_minor != running:
            reason = (
                f"stored balance after {entry.balance_after_minor} differs from the running sum {running} "
                "of the entries up to it (minor units)"
            )
        if reason:
            breaks.append(ChainBreak(entry.account_id, entry.id, entry.seq, reason))
            broken_accounts.add(entry.account_id)
        expected_prev, expected_seq = entry.hash, entry.seq + 1
    return checked, breaks
