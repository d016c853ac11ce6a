"""The one function that writes ledger entries.

`post_entry` runs inside the caller's transaction with the account already locked (`lock_account`): it
checks the draft in Python first so that refusals name the field, then assigns the next sequence number,
chains the hash, carries the running balance on from the chain's head and inserts. The database
constraints repeat the same rules as a last line of defence.

The balance is the head entry's `balance_after_minor`: every read here probes the head of the account's
chain, so a posting costs the same on the first day of a stay as after a year of daily charges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, literal, literal_column, select, true
from sqlalchemy.orm import Session

from .. import fast_sql
from ..models import ENTRY_KINDS, PAYMENT_METHODS, LedgerEntry, PurchaseRequest, StayAccount, utcnow
from ..money import MAX_MINOR
from .chain import GENESIS, entry_hash
from .errors import LedgerConflict, LedgerError

__all__ = [
    "Actor",
    "Entry",
    "EntryDraft",
    "PostedEntry",
    "account_state",
    "available_minor",
    "balance_and_holds",
    "balance_minor",
    "holds_minor",
    "last_daily_charge",
    "post_entry",
    "run",
]

_SIGN = {"deposit": 1, "daily_charge": -1, "charge": -1, "purchase": -1, "refund": -1}


@dataclass(frozen=True)
class Actor:
    """Who acts and from where; roles decide what the ledger allows."""

    label: str
    source: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class EntryDraft:
    kind: str
    amount_minor: int
    entry_date: date
    idempotency_key: str
    service_date: date | None = None
    method: str | None = None
    payer: str | None = None
    article_id: int | None = None
    tariff_id: int | None = None
    reason: str | None = None
    reverses_entry_id: int | None = None
    purchase_request_id: int | None = None
    overdraft_override: bool = False
    sign: int | None = None
    """Only for reversals: the opposite of the reversed entry's sign."""


# The hot path's statements are built once, with bound parameters, and run on the session's connection:
# building a statement costs more than SQLite takes to run it (coercions and cache-key generation on every
# call), and the ORM's execute path adds as much again. `run` flushes pending ORM changes first, as the
# session's autoflush would.
_ENTRIES = LedgerEntry.__table__
_ACCOUNT = bindparam("account_id")
_HEAD = (
    select(LedgerEntry.seq, LedgerEntry.hash, LedgerEntry.balance_after_minor)
    .where(LedgerEntry.account_id == _ACCOUNT)
    .order_by(LedgerEntry.seq.desc())
    .limit(1)
)
# The balance is the head entry's running balance: one probe of the (account_id, seq) index however long
# the stay, where a SUM over the account's entries grew with every day of it. No entries: 0.
_BALANCE = func.coalesce(_HEAD.with_only_columns(LedgerEntry.balance_after_minor).scalar_subquery(), 0)
_HOLDS = (
    select(func.coalesce(func.sum(PurchaseRequest.amount_minor), 0))
    .where(
        PurchaseRequest.account_id == _ACCOUNT,
        PurchaseRequest.status == "pending",
        PurchaseRequest.expires_at > bindparam("now", type_=PurchaseRequest.expires_at.type),
    )
    .scalar_subquery()
)
# The kind as a literal, not a parameter: the planners (PostgreSQL's generic plan of a prepared statement
# included) use the partial index of daily charges only when they can see the value; and ORDER BY … LIMIT 1
# rather than max(), which PostgreSQL may plan as an aggregate over all of the account's daily charges.
_IS_DAILY = LedgerEntry.kind == literal_column("'daily_charge'")
_LAST_DAILY = (
    select(LedgerEntry.service_date)
    .where(LedgerEntry.account_id == _ACCOUNT, _IS_DAILY)
    .order_by(LedgerEntry.service_date.desc())
    .limit(1)
    .scalar_subquery()
)
_BALANCE_ONLY = select(_BALANCE)
_LAST_DAILY_ONLY = select(_LAST_DAILY)
_HOLDS_ONLY = select(_HOLDS)
_SUMS = select(_BALANCE, _HOLDS)
_STATE = select(_BALANCE, _HOLDS, _LAST_DAILY)
_REPLAY = select(LedgerEntry.id).where(
    LedgerEntry.portal_id == bindparam("portal_id"), LedgerEntry.idempotency_key == bindparam("key")
)
_INSERT = insert(_ENTRIES).returning(_ENTRIES.c.id)
# Everything post_entry reads, in one round trip once the account is locked (on PostgreSQL a statement
# after the lock sees the entries committed before it): an earlier entry with this key, the chain's head
# (seq, hash and running balance, from one probe: the head joined to a one-row FROM, so an empty account
# still gives a row) and the holds and last daily charge a one-off debit and the summary need.
_HEAD_ROW = _HEAD.subquery("head")
_ONE_ROW = select(literal(1).label("one")).subquery("one_row")
_POSTING = select(
    _REPLAY.scalar_subquery(),
    _HEAD_ROW.c.seq,
    _HEAD_ROW.c.hash,
    _HEAD_ROW.c.balance_after_minor,
    _HOLDS,
    _LAST_DAILY,
).select_from(_ONE_ROW.outerjoin(_HEAD_ROW, true()))


run = fast_sql.run


def balance_minor(session: Session, account_id: int) -> int:
    return int(run(session, _BALANCE_ONLY, {"account_id": account_id}).scalar() or 0)


def last_daily_charge(session: Session, account_id: int) -> date | None:
    """The service date of the account's last daily charge (one probe of the daily charges' index)."""
    return run(session, _LAST_DAILY_ONLY, {"account_id": account_id}).scalar()


def holds_minor(session: Session, account_id: int, now: datetime | None = None) -> int:
    return int(run(session, _HOLDS_ONLY, {"account_id": account_id, "now": now or utcnow()}).scalar() or 0)


def balance_and_holds(session: Session, account_id: int) -> tuple[int, int]:
    """Balance and holds in one round trip (the hot path of every charge)."""
    balance, holds = run(session, _SUMS, {"account_id": account_id, "now": utcnow()}).one()
    return int(balance or 0), int(holds or 0)


def account_state(session: Session, account_id: int) -> tuple[int, int, date | None]:
    """Balance, holds and the last charged service date in one round trip (every stay summary)."""
    balance, holds, last_daily = run(session, _STATE, {"account_id": account_id, "now": utcnow()}).one()
    return int(balance or 0), int(holds or 0), last_daily


def available_minor(session: Session, account_id: int) -> int:
    balance, holds = balance_and_holds(session, account_id)
    return balance - holds


def _check(draft: EntryDraft) -> int:
    if draft.kind not in ENTRY_KINDS:
        raise LedgerError("kind", f"must be one of {', '.join(ENTRY_KINDS)}, got {draft.kind!r}")
    if isinstance(draft.amount_minor, bool) or not isinstance(draft.amount_minor, int):
        raise LedgerError("amount", "must be an integer number of minor units")
    if draft.amount_minor <= 0:
        raise LedgerError("amount", "must be greater than zero")
    if draft.amount_minor > MAX_MINOR:
        raise LedgerError("amount", "is unrealistically large")
    if draft.method is not None and draft.method not in PAYMENT_METHODS:
        raise LedgerError("method", f"must be one of {', '.join(PAYMENT_METHODS)}, got {draft.method!r}")
    if not draft.idempotency_key or len(draft.idempotency_key) > 200:
        raise LedgerError("idempotency_key", "1-200 characters required")
    if draft.kind == "daily_charge" and draft.service_date is None:
        raise LedgerError("service_date", "required for a daily charge")
    if draft.kind == "reversal":
        if draft.reverses_entry_id is None:
            raise LedgerError("entry_id", "a reversal must name the entry it reverses")
        if not (draft.reason or "").strip():
            raise LedgerError("reason", "a reversal needs a reason")
        if draft.sign not in (1, -1):
            raise LedgerError("sign", "a reversal's sign must be +1 or -1")
        return draft.sign
    return _SIGN[draft.kind]


def _same_request(existing: LedgerEntry, draft: EntryDraft, account: StayAccount) -> bool:
    wanted = asdict(draft)
    wanted.pop("sign")
    return existing.account_id == account.id and all(
        getattr(existing, name) == value for name, value in wanted.items()
    )


def post_entry(
    session: Session,
    account: StayAccount,
    draft: EntryDraft,
    actor: Actor,
    *,
    unless_replay: Callable[[int], None] | None = None,
) -> Entry:
    """Append one entry to a locked, open account. A replay of the same idempotency key with the same
    content returns the stored entry; with different content it is refused. `unless_replay(available)`
    runs only for a new entry, before it is written, with the available balance (a replay must return
    the first result, not be re-judged against today's balance)."""
    sign = _check(draft)
    existing_id, head_seq, head_hash, balance, holds, last_daily = run(
        session,
        _POSTING,
        {
            "portal_id": account.portal_id,
            "key": draft.idempotency_key,
            "account_id": account.id,
            "now": utcnow(),
        },
    ).one()
    if existing_id is not None:
        existing = session.get(LedgerEntry, existing_id)
        assert existing is not None
        if _same_request(existing, draft, account):
            return existing
        raise LedgerConflict(
            "idempotency_key", "already used for a different entry", code="idempotency_key_reused"
        )
    if unless_replay is not None:
        unless_replay(int(balance or 0) - int(holds or 0))
    if account.status != "open" and draft.kind != "reversal":
        raise LedgerConflict("account", "the stay is closed; only an admin reversal is possible")
    # The unique indexes enforce these two as well; checking first names the field instead of failing
    # the whole transaction with an IntegrityError.
    if draft.kind == "daily_charge":
        charged = session.scalar(
            select(LedgerEntry.id).where(
                LedgerEntry.account_id == account.id,
                _IS_DAILY,
                LedgerEntry.service_date == draft.service_date,
            )
        )
        if charged is not None:
            raise LedgerConflict("service_date", f"{draft.service_date} is already charged (entry {charged})")
    if draft.kind == "reversal":
        earlier = session.scalar(
            select(LedgerEntry.id).where(LedgerEntry.reverses_entry_id == draft.reverses_entry_id)
        )
        if earlier is not None:
            raise LedgerConflict(
                "entry_id", f"entry {draft.reverses_entry_id} was already reversed by entry {earlier}"
            )

    seq, prev_hash = (head_seq + 1, head_hash) if head_seq is not None else (1, GENESIS)
    balance_after = int(balance or 0) + sign * draft.amount_minor
    values = {
        "portal_id": account.portal_id,
        "account_id": account.id,
        "seq": seq,
        "kind": draft.kind,
        "sign": sign,
        "amount_minor": draft.amount_minor,
        "currency": account.currency,
        "entry_date": draft.entry_date,
        "service_date": draft.service_date,
        "method": draft.method,
        "payer": draft.payer,
        "article_id": draft.article_id,
        "tariff_id": draft.tariff_id,
        "reason": draft.reason,
        "reverses_entry_id": draft.reverses_entry_id,
        "purchase_request_id": draft.purchase_request_id,
        "overdraft_override": draft.overdraft_override,
        "idempotency_key": draft.idempotency_key,
        "actor": actor.label,
        "source": actor.source,
        "created_at": utcnow(),
        "prev_hash": prev_hash,
        "balance_after_minor": balance_after,
    }
    values["hash"] = entry_hash(prev_hash, values)
    # A Core INSERT rather than the ORM's unit of work (several times the cost of the statement itself),
    # and a light object rather than an ORM instance joined to the session (its construction and
    # instrumentation cost as much as the INSERT).
    entry_id = run(session, _INSERT, values).scalar_one()
    # The account's state right after this entry, from what the read above saw under the lock: the stay
    # summary of a request whose last write this is needs no second read (`account_state`'s three values).
    if draft.kind == "daily_charge" and (last_daily is None or draft.service_date > last_daily):
        last_daily = draft.service_date
    state_after = (balance_after, int(holds or 0), last_daily)
    return PostedEntry(entry_id, values, state_after, account)


class PostedEntry:
    """An entry this transaction has just written: LedgerEntry's columns as attributes, plus what the
    request goes on to need without another query."""

    posted_now = True
    """Lets the mirror skip its replay lookup: an entry posted in this transaction has no note yet."""

    def __init__(
        self,
        entry_id: int,
        values: dict[str, Any],
        state_after: tuple[int, int, date | None],
        account: StayAccount,
    ) -> None:
        self.__dict__.update(values)
        self.id = entry_id
        self.state_after = state_after
        self.posted_to = account
        """The locked account, so the caller's lookup of it needs no query."""

    def __repr__(self) -> str:
        return f"<PostedEntry {self.id} {self.__dict__.get('kind')} {self.__dict__.get('amount_minor')}>"


Entry = LedgerEntry | PostedEntry
"""What post_entry returns: the stored entry for a replay, else the one it has just written."""
