"""Tamper evidence: every entry hashes its predecessor's hash together with its own canonical content.

Changing any stored field of any entry (or deleting or reordering one) breaks the chain from that entry
on, and `verify_chains` names the first broken entry.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["GENESIS", "canonical_content", "entry_hash"]

GENESIS = "0" * 64

CHAINED_FIELDS = (
    "portal_id",
    "account_id",
    "seq",
    "kind",
    "sign",
    "amount_minor",
    "currency",
    "entry_date",
    "service_date",
    "method",
    "payer",
    "article_id",
    "tariff_id",
    "reason",
    "reverses_entry_id",
    "purchase_request_id",
    "overdraft_override",
    "idempotency_key",
    "actor",
    "source",
    "created_at",
)


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        # Microseconds survive both SQLite and PostgreSQL; anything finer would not verify after a reload.
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return value
    return value


def canonical_content(fields: dict[str, Any]) -> str:
    document = {name: _value(fields.get(name)) for name in CHAINED_FIELDS}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + "\n" + canonical_content(fields)).encode()).hexdigest()
