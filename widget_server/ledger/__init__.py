"""The stay ledger (seed 000): personal deposit accounts, daily tariff debits, one-off charges, purchase
approval, reversal, discharge. Domain code: no Flask, no HTTP client, no concrete connector."""

from .accounts import find_account, lock_account
from .errors import LedgerConflict, LedgerError, LedgerForbidden, LedgerNotFound
from .operations import Admission, admit, change_tariff, charge, deposit, discharge, reverse
from .posting import Actor, EntryDraft, balance_minor, post_entry
from .purchases import Consent, approve_purchase, expire_holds, reject_purchase, request_purchase
from .summary import StaySummary, WhatIf, stay_summary
from .verify import verify_chains

__all__ = [
    "Actor",
    "Admission",
    "Consent",
    "EntryDraft",
    "LedgerConflict",
    "LedgerError",
    "LedgerForbidden",
    "LedgerNotFound",
    "StaySummary",
    "WhatIf",
    "admit",
    "approve_purchase",
    "balance_minor",
    "change_tariff",
    "charge",
    "deposit",
    "discharge",
    "expire_holds",
    "find_account",
    "lock_account",
    "post_entry",
    "reject_purchase",
    "request_purchase",
    "reverse",
    "stay_summary",
    "verify_chains",
]
