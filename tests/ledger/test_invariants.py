"""Ledger invariants, tested around the ORM and then through the domain.

1. The database itself refuses what the ledger must never hold, even when a writer bypasses
   `post_entry` with raw SQL: each refusal is an IntegrityError, next to a control row that differs in
   exactly the offending value and is accepted (so the refusal is the constraint's doing, not a typo).
2. The domain refuses the same things first, naming the field and the reason.
3. Tamper evidence: editing or deleting a stored entry with raw SQL is found by `verify_chains`, which
   names exactly that entry and its account; so is the `clinicbridge ledger verify` command.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Boolean, Date, bindparam, func, select, text
from sqlalchemy.exc import IntegrityError

from widget_server.ledger import (
    Actor,
    Admission,
    Consent,
    EntryDraft,
    LedgerConflict,
    LedgerError,
    LedgerForbidden,
    admit,
    approve_purchase,
    balance_minor,
    charge,
    deposit,
    discharge,
    lock_account,
    post_entry,
    request_purchase,
    reverse,
    verify_chains,
)
from widget_server.ledger.chain import CHAINED_FIELDS, entry_hash
from widget_server.ledger.daily import post_daily_charges
from widget_server.ledger.verify import ChainBreak
from widget_server.models import ExpenseArticle, LedgerEntry, Portal, StayAccount, Tariff, implied_roles
from widget_server.models.base import UtcDateTime
from widget_server.money import MAX_MINOR

ADMIN = Actor("test:admin", "api", implied_roles(["admin"]))
FINANCE = Actor("test:finance", "api", implied_roles(["finance"]))
STAFF = Actor("test:staff", "api", implied_roles(["staff"]))

TODAY = date(2026, 12, 2)
_unique = itertools.count(1)


@dataclass(frozen=True)
class World:
    portal_id: int
    other_portal_id: int
    account_id: int
    second_account_id: int
    other_account_id: int
    tariff_id: int
    article_id: int
    deposit_id: int
    charge_id: int
    purchase_id: int
    entries: int


def _catalogue(session, portal_id: int) -> tuple[int, int]:
    tariff = Tariff(portal_id=portal_id, name="Стандарт", daily_rate_minor=350_000)
    article = ExpenseArticle(portal_id=portal_id, name="Перевязочный материал")
    session.add_all([tariff, article])
    session.flush()
    return tariff.id, article.id


@pytest.fixture
def world(rt, clinic, make_portal, frozen) -> World:
    """Two stays in the clinic (deals 701 and 702) and one in another portal, after a few operations:
    admission with a deposit, a daily run, a charge, an approved purchase and a reversal."""
    other = make_portal(slug="other-clinic")
    frozen.set_local("2026-11-30 10:00")
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        tariff_id, article_id = _catalogue(s, clinic.id)
        other_tariff_id, _ = _catalogue(s, other.id)
        for deal in ("701", "702"):
            admit(
                s,
                portal,
                Admission(
                    deal, date(2026, 11, 30), tariff_id, deposit_minor=5_000_000, deposit_method="cash"
                ),
                FINANCE,
                f"admit-{deal}",
            )
        admit(
            s,
            s.get(Portal, other.id),
            Admission(
                "701", date(2026, 11, 30), other_tariff_id, deposit_minor=100_000, deposit_method="card"
            ),
            FINANCE,
            "admit-701",  # the same key in another portal
        )
    frozen.set_local("2026-12-02 10:00")
    post_daily_charges(rt.db.sessions, clinic.id, TODAY)
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        charged = charge(s, portal, "701", 150_000, article_id, "перевязка", FINANCE, "charge-1")
        wrong = charge(s, portal, "701", 200_000, article_id, "ошибочно", FINANCE, "charge-2")
        held, _ = request_purchase(
            s, portal, "701", 1_200_000, article_id, "Курс препарата", FINANCE, "buy-1"
        )
        consent = Consent("Иванова Мария", "phone", frozen.now - timedelta(minutes=5))
        approve_purchase(s, portal, "701", held.id, consent, FINANCE, "buy-1-ok")
        reverse(s, portal, "701", wrong.id, "списано не тому пациенту", ADMIN, "rev-1")
        account = s.get(StayAccount, charged.account_id)
        first = s.scalar(
            select(LedgerEntry).where(LedgerEntry.account_id == account.id, LedgerEntry.seq == 1)
        )
        second = s.scalar(select(StayAccount.id).where(StayAccount.deal_id == "702"))
        other_account = s.scalar(select(StayAccount.id).where(StayAccount.portal_id == other.id))
        entries = s.scalar(select(func.count()).select_from(LedgerEntry))
        return World(
            portal_id=clinic.id,
            other_portal_id=other.id,
            account_id=account.id,
            second_account_id=second,
            other_account_id=other_account,
            tariff_id=tariff_id,
            article_id=article_id,
            deposit_id=first.id,
            charge_id=charged.id,
            purchase_id=held.id,
            entries=entries,
        )


# --- 1. the database refuses ------------------------------------------------------------------------------

ENTRY_COLUMNS = (
    "portal_id account_id seq kind sign amount_minor currency entry_date service_date method payer "
    "article_id tariff_id reason reverses_entry_id purchase_request_id overdraft_override "
    "idempotency_key actor source created_at prev_hash hash balance_after_minor"
).split()
INSERT_ENTRY = text(
    f"INSERT INTO ledger_entries ({', '.join(ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in ENTRY_COLUMNS)})"
).bindparams(
    bindparam("entry_date", type_=Date()),
    bindparam("service_date", type_=Date()),
    bindparam("overdraft_override", type_=Boolean()),
    bindparam("created_at", type_=UtcDateTime()),
)


def entry_row(world: World, **changes: object) -> dict[str, object]:
    """A row every constraint accepts (a cash deposit with a fresh seq and key), with `changes` applied."""
    n = next(_unique)
    row: dict[str, object] = {
        "portal_id": world.portal_id,
        "account_id": world.account_id,
        "seq": 10_000 + n,
        "kind": "deposit",
        "sign": 1,
        "amount_minor": 100,
        "currency": "RUB",
        "entry_date": TODAY,
        "service_date": None,
        "method": "cash",
        "payer": None,
        "article_id": None,
        "tariff_id": None,
        "reason": None,
        "reverses_entry_id": None,
        "purchase_request_id": None,
        "overdraft_override": False,
        "idempotency_key": f"raw-sql:{n}",
        "actor": "raw-sql",
        "source": "api",
        "created_at": datetime(2026, 12, 2, 7, 0, tzinfo=UTC),
        "prev_hash": "0" * 64,
        "hash": "f" * 64,
        "balance_after_minor": 100,
    }
    row.update(changes)
    return row


def _count(rt, table: str) -> int:
    with rt.db.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def accepted(rt, statement, params: dict[str, object]) -> None:
    with rt.db.engine.begin() as conn:
        conn.execute(statement, params)


def refused(rt, statement, params: dict[str, object], table: str = "ledger_entries") -> None:
    before = _count(rt, table)
    with pytest.raises(IntegrityError):
        with rt.db.engine.begin() as conn:
            conn.execute(statement, params)
    assert _count(rt, table) == before


def test_the_control_row_is_accepted_so_each_refusal_below_is_the_constraints_doing(rt, world):
    before = _count(rt, "ledger_entries")
    accepted(rt, INSERT_ENTRY, entry_row(world))
    accepted(
        rt, INSERT_ENTRY, entry_row(world, kind="charge", sign=-1, method=None, article_id=world.article_id)
    )
    assert _count(rt, "ledger_entries") == before + 2


@pytest.mark.parametrize("amount", [0, -1, -350_000])
def test_db_refuses_a_zero_or_negative_amount(rt, world, amount):
    refused(rt, INSERT_ENTRY, entry_row(world, amount_minor=amount))


def test_db_refuses_a_deposit_that_debits(rt, world):
    refused(rt, INSERT_ENTRY, entry_row(world, kind="deposit", sign=-1))


@pytest.mark.parametrize("kind", ["charge", "daily_charge", "purchase", "refund"])
def test_db_refuses_a_debit_kind_that_credits(rt, world, kind):
    row = entry_row(world, kind=kind, sign=1, method=None, service_date=TODAY + timedelta(days=30))
    refused(rt, INSERT_ENTRY, row)
    accepted(rt, INSERT_ENTRY, {**row, "sign": -1, "idempotency_key": f"{row['idempotency_key']}:ok"})


@pytest.mark.parametrize("sign", [0, 2, -2])
def test_db_refuses_a_sign_other_than_plus_or_minus_one(rt, world, sign):
    # A reversal may go either way, so only the sign check itself can refuse these.
    row = entry_row(world, kind="reversal", sign=sign, reverses_entry_id=world.charge_id, reason="сторно")
    refused(rt, INSERT_ENTRY, row)


@pytest.mark.parametrize("kind", ["bonus", "DEPOSIT", ""])
def test_db_refuses_an_unknown_kind(rt, world, kind):
    refused(rt, INSERT_ENTRY, entry_row(world, kind=kind))


def test_db_refuses_an_unknown_method_or_source(rt, world):
    refused(rt, INSERT_ENTRY, entry_row(world, method="bitcoin"))
    refused(rt, INSERT_ENTRY, entry_row(world, source="telepathy"))


def test_db_refuses_a_daily_charge_without_service_date(rt, world):
    row = entry_row(world, kind="daily_charge", sign=-1, method=None, service_date=None)
    refused(rt, INSERT_ENTRY, row)
    accepted(rt, INSERT_ENTRY, {**row, "service_date": date(2027, 1, 5)})


def test_db_refuses_a_second_daily_charge_for_the_same_account_and_day(rt, world):
    day = date(2027, 1, 10)
    daily = {"kind": "daily_charge", "sign": -1, "method": None, "service_date": day}
    accepted(rt, INSERT_ENTRY, entry_row(world, **daily))
    refused(rt, INSERT_ENTRY, entry_row(world, **daily))
    # The next day, and the same day on another account, are fine; so is the day the job already charged
    # for another kind of entry.
    accepted(rt, INSERT_ENTRY, entry_row(world, **{**daily, "service_date": day + timedelta(days=1)}))
    accepted(rt, INSERT_ENTRY, entry_row(world, **daily, **{"account_id": world.second_account_id}))
    accepted(rt, INSERT_ENTRY, entry_row(world, kind="charge", sign=-1, method=None, service_date=day))


def test_db_refuses_a_second_daily_charge_for_a_day_the_job_charged(rt, world):
    row = entry_row(world, kind="daily_charge", sign=-1, method=None, service_date=TODAY)
    refused(rt, INSERT_ENTRY, row)


def test_db_refuses_a_reversal_without_reason_or_target(rt, world):
    row = entry_row(world, kind="reversal", sign=1, method=None, reverses_entry_id=world.charge_id)
    refused(rt, INSERT_ENTRY, row)  # no reason
    refused(rt, INSERT_ENTRY, {**row, "reason": "сторно", "reverses_entry_id": None})  # no target
    accepted(rt, INSERT_ENTRY, {**row, "reason": "сторно"})


def test_db_refuses_a_second_reversal_of_the_same_entry(rt, world):
    row = entry_row(
        world, kind="reversal", sign=1, method=None, reverses_entry_id=world.charge_id, reason="1"
    )
    accepted(rt, INSERT_ENTRY, row)
    refused(rt, INSERT_ENTRY, entry_row(world, **{**row, "seq": 20_000, "idempotency_key": "another-key"}))


def test_db_refuses_a_reused_idempotency_key_within_a_portal_only(rt, world):
    row = entry_row(world, idempotency_key="same-key")
    accepted(rt, INSERT_ENTRY, row)
    refused(rt, INSERT_ENTRY, entry_row(world, idempotency_key="same-key"))  # another seq, same portal
    refused(
        rt, INSERT_ENTRY, entry_row(world, idempotency_key="same-key", account_id=world.second_account_id)
    )
    accepted(
        rt,
        INSERT_ENTRY,
        entry_row(
            world,
            idempotency_key="same-key",
            portal_id=world.other_portal_id,
            account_id=world.other_account_id,
        ),
    )


def test_db_refuses_a_duplicate_sequence_number_on_one_account(rt, world):
    refused(rt, INSERT_ENTRY, entry_row(world, seq=1))
    accepted(rt, INSERT_ENTRY, entry_row(world, seq=500))
    refused(rt, INSERT_ENTRY, entry_row(world, seq=500))
    accepted(rt, INSERT_ENTRY, entry_row(world, seq=500, account_id=world.second_account_id))


INSERT_ACCOUNT = text(
    "INSERT INTO stay_accounts (portal_id, deal_id, status, currency, admission_date, low_balance_alerted, "
    "opened_by, opened_at) VALUES (:portal_id, :deal_id, :status, 'RUB', :admission_date, :alerted, "
    "'raw-sql', :opened_at)"
).bindparams(
    bindparam("admission_date", type_=Date()),
    bindparam("alerted", type_=Boolean()),
    bindparam("opened_at", type_=UtcDateTime()),
)


def account_row(world: World, deal_id: str, status: str = "open") -> dict[str, object]:
    return {
        "portal_id": world.portal_id,
        "deal_id": deal_id,
        "status": status,
        "admission_date": TODAY,
        "alerted": False,
        "opened_at": datetime(2026, 12, 2, 7, 0, tzinfo=UTC),
    }


def test_db_refuses_a_second_open_account_for_a_deal_but_not_a_reopening(rt, world):
    refused(rt, INSERT_ACCOUNT, account_row(world, "701"), table="stay_accounts")
    accepted(rt, INSERT_ACCOUNT, account_row(world, "701", status="closed"))  # history is fine
    with rt.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE stay_accounts SET status = 'closed', discharge_date = :d WHERE id = :id").bindparams(
                bindparam("d", type_=Date())
            ),
            {"d": TODAY, "id": world.account_id},
        )
    accepted(rt, INSERT_ACCOUNT, account_row(world, "701"))  # open again after the first is closed
    refused(rt, INSERT_ACCOUNT, account_row(world, "701"), table="stay_accounts")


def test_db_refuses_an_unknown_account_status(rt, world):
    refused(rt, INSERT_ACCOUNT, account_row(world, "900", status="frozen"), table="stay_accounts")


INSERT_TARIFF = text(
    "INSERT INTO tariffs (portal_id, name, daily_rate_minor, active, created_at) "
    "VALUES (:portal_id, :name, :rate, :active, :created_at)"
).bindparams(bindparam("active", type_=Boolean()), bindparam("created_at", type_=UtcDateTime()))
INSERT_ASSIGNMENT = text(
    "INSERT INTO tariff_assignments (portal_id, account_id, tariff_id, daily_rate_minor, effective_from, "
    "created_by, created_at) VALUES (:portal_id, :account_id, :tariff_id, :rate, :effective_from, 'raw-sql', "
    ":created_at)"
).bindparams(bindparam("effective_from", type_=Date()), bindparam("created_at", type_=UtcDateTime()))


@pytest.mark.parametrize("rate", [-1, -350_000])
def test_db_refuses_a_tariff_with_a_negative_rate(rt, world, rate):
    now = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    tariff = {"portal_id": world.portal_id, "rate": rate, "active": True, "created_at": now}
    refused(rt, INSERT_TARIFF, {**tariff, "name": "Минус"}, table="tariffs")
    accepted(rt, INSERT_TARIFF, {**tariff, "name": "Бесплатно", "rate": 0})
    assignment = {
        "portal_id": world.portal_id,
        "account_id": world.account_id,
        "tariff_id": world.tariff_id,
        "rate": rate,
        "effective_from": TODAY + timedelta(days=5),
        "created_at": now,
    }
    refused(rt, INSERT_ASSIGNMENT, assignment, table="tariff_assignments")


INSERT_PURCHASE = text(
    "INSERT INTO purchase_requests (portal_id, account_id, amount_minor, description, status, requested_by, "
    "requested_at, expires_at, consent_by, consent_at, entry_id, idempotency_key) VALUES (:portal_id, "
    ":account_id, :amount, 'raw-sql', :status, 'raw-sql', :requested_at, :expires_at, :consent_by, "
    ":consent_at, :entry_id, :key)"
).bindparams(
    bindparam("requested_at", type_=UtcDateTime()),
    bindparam("expires_at", type_=UtcDateTime()),
    bindparam("consent_at", type_=UtcDateTime()),
)


def purchase_row(world: World, **changes: object) -> dict[str, object]:
    now = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    row: dict[str, object] = {
        "portal_id": world.portal_id,
        "account_id": world.account_id,
        "amount": 700_000,
        "status": "approved",
        "requested_at": now,
        "expires_at": now + timedelta(hours=72),
        "consent_by": "Иванова Мария",
        "consent_at": now,
        "entry_id": world.charge_id,
        "key": f"raw-purchase:{next(_unique)}",
    }
    row.update(changes)
    return row


@pytest.mark.parametrize("missing", ["consent_by", "consent_at", "entry_id"])
def test_db_refuses_an_approved_purchase_without_consent(rt, world, missing):
    refused(rt, INSERT_PURCHASE, purchase_row(world, **{missing: None}), table="purchase_requests")
    accepted(rt, INSERT_PURCHASE, purchase_row(world))
    accepted(
        rt,
        INSERT_PURCHASE,
        purchase_row(world, status="pending", consent_by=None, consent_at=None, entry_id=None),
    )


def test_db_refuses_a_purchase_with_a_non_positive_amount_or_unknown_status(rt, world):
    refused(rt, INSERT_PURCHASE, purchase_row(world, amount=0), table="purchase_requests")
    refused(rt, INSERT_PURCHASE, purchase_row(world, status="maybe"), table="purchase_requests")


# --- 2. the domain refuses first, naming the field ----------------------------------------------------


def _entries(rt) -> int:
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(LedgerEntry))


def draft(**changes: object) -> EntryDraft:
    values: dict[str, object] = {
        "kind": "deposit",
        "amount_minor": 100,
        "entry_date": TODAY,
        "idempotency_key": f"domain:{next(_unique)}",
        "method": "cash",
    }
    values.update(changes)
    return EntryDraft(**values)  # type: ignore[arg-type]


def post(rt, world: World, entry: EntryDraft, *, deal: str = "701", actor: Actor = FINANCE) -> LedgerEntry:
    with rt.db.transaction() as s:
        return post_entry(s, lock_account(s, world.portal_id, deal), entry, actor)


def refused_by_domain(rt, world: World, entry: EntryDraft, field: str, error=LedgerError) -> LedgerError:
    before = _entries(rt)
    with pytest.raises(error) as refusal:
        post(rt, world, entry)
    assert refusal.value.field == field
    assert refusal.value.reason
    assert _entries(rt) == before
    return refusal.value


@pytest.mark.parametrize("amount", [0, -1, -350_000, True, 1.5, "100", MAX_MINOR + 1])
def test_post_entry_refuses_an_amount_that_is_not_a_positive_integer(rt, world, amount):
    refused_by_domain(rt, world, draft(amount_minor=amount), "amount")


def test_post_entry_refuses_an_unknown_kind_method_or_key(rt, world):
    refused_by_domain(rt, world, draft(kind="bonus"), "kind")
    refused_by_domain(rt, world, draft(method="bitcoin"), "method")
    refused_by_domain(rt, world, draft(idempotency_key=""), "idempotency_key")
    refused_by_domain(rt, world, draft(idempotency_key="k" * 201), "idempotency_key")


def test_post_entry_fixes_the_direction_by_kind_whatever_the_draft_says(rt, world):
    credit = post(rt, world, draft(kind="deposit", sign=-1))
    debit = post(rt, world, draft(kind="charge", sign=1, method=None, article_id=world.article_id))
    assert (credit.sign, debit.sign) == (1, -1)


def test_post_entry_refuses_a_daily_charge_without_service_date(rt, world):
    refused_by_domain(rt, world, draft(kind="daily_charge", method=None), "service_date")


def test_post_entry_refuses_a_second_daily_charge_for_a_day_naming_the_field(rt, world):
    # 2 Dec was charged by the daily job under the key daily:<account>:2026-12-02; another key, same day.
    refused_by_domain(
        rt,
        world,
        draft(kind="daily_charge", method=None, service_date=TODAY, entry_date=TODAY),
        "service_date",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reason": None}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reverses_entry_id": None}, "entry_id"),
        ({"sign": None}, "sign"),
        ({"sign": 0}, "sign"),
    ],
)
def test_post_entry_refuses_an_incomplete_reversal(rt, world, changes, field):
    base = {"kind": "reversal", "method": None, "reverses_entry_id": None, "reason": "сторно", "sign": 1}
    base["reverses_entry_id"] = world.charge_id
    refused_by_domain(rt, world, draft(**{**base, **changes}), field)


def test_post_entry_refuses_a_second_reversal_naming_the_field(rt, world):
    reversed_ = {"kind": "reversal", "method": None, "reason": "ещё раз", "sign": 1}
    with rt.db.transaction() as s:
        already = s.scalar(select(LedgerEntry.reverses_entry_id).where(LedgerEntry.kind == "reversal"))
    refused_by_domain(rt, world, draft(**reversed_, reverses_entry_id=already), "entry_id")


def test_reverse_refuses_a_second_reversal_a_reversal_of_a_reversal_staff_and_a_blank_reason(rt, world):
    with rt.db.transaction() as s:
        portal = s.get(Portal, world.portal_id)
        reversal = s.scalar(select(LedgerEntry).where(LedgerEntry.kind == "reversal"))
        target, reversal_id = reversal.reverses_entry_id, reversal.id
    cases = [
        (target, "ещё раз", ADMIN, LedgerConflict, "entry_id", "already reversed"),
        (reversal_id, "назад", ADMIN, LedgerConflict, "entry_id", "cannot itself be reversed"),
        (world.charge_id, "ошибка", FINANCE, LedgerForbidden, "role", "admin"),
        (world.charge_id, "ошибка", STAFF, LedgerForbidden, "role", "admin"),
        (world.charge_id, "  ", ADMIN, LedgerError, "reason", "reason"),
        (10**9, "нет такой", ADMIN, LedgerError, "entry_id", "no entry"),
    ]
    before = _entries(rt)
    for entry_id, reason, actor, error, field, words in cases:
        with pytest.raises(error) as refusal:
            with rt.db.transaction() as s:
                reverse(s, s.get(Portal, portal.id), "701", entry_id, reason, actor, f"rev:{next(_unique)}")
        assert (refusal.value.field, words in refusal.value.reason) == (field, True), refusal.value
    assert _entries(rt) == before


def test_post_entry_replays_the_same_key_and_refuses_it_for_other_content(rt, world):
    first = post(rt, world, draft(idempotency_key="top-up-7", amount_minor=5_000))
    before = _entries(rt)
    assert post(rt, world, draft(idempotency_key="top-up-7", amount_minor=5_000)).id == first.id
    assert _entries(rt) == before
    refusal = refused_by_domain(
        rt, world, draft(idempotency_key="top-up-7", amount_minor=5_001), "idempotency_key", LedgerConflict
    )
    assert refusal.code == "idempotency_key_reused"
    # On another account of the same portal the key is taken too ...
    with pytest.raises(LedgerConflict):
        post(rt, world, draft(idempotency_key="top-up-7", amount_minor=5_000), deal="702")
    # ... but another portal has keys of its own.
    with rt.db.transaction() as s:
        other = lock_account(s, world.other_portal_id, "701")
        entry = post_entry(s, other, draft(idempotency_key="top-up-7", amount_minor=5_000), FINANCE)
        assert (entry.portal_id, entry.seq) == (world.other_portal_id, 2)


def test_a_closed_stay_takes_only_reversals(rt, world, frozen):
    frozen.set_local("2026-12-03 10:00")  # 2 Dec is charged already; discharged on 3 Dec, not charged
    with rt.db.transaction() as s:
        discharge(s, s.get(Portal, world.portal_id), "702", TODAY + timedelta(days=1), "cash", FINANCE, "out")
    before = _entries(rt)
    with pytest.raises(LedgerConflict) as refusal:
        post(rt, world, draft(), deal="702")
    assert refusal.value.field == "account"
    with pytest.raises(LedgerConflict) as again:
        with rt.db.transaction() as s:
            deposit(s, s.get(Portal, world.portal_id), "702", 100, "cash", None, FINANCE, "late")
    assert again.value.field == "account"
    assert _entries(rt) == before
    with rt.db.transaction() as s:
        refund = s.scalar(
            select(LedgerEntry).where(
                LedgerEntry.account_id == world.second_account_id, LedgerEntry.kind == "refund"
            )
        )
        reverse(s, s.get(Portal, world.portal_id), "702", refund.id, "возврат не выдан", ADMIN, "rev-refund")
        assert balance_minor(s, world.second_account_id) == refund.amount_minor


def test_admit_refuses_a_second_open_stay_and_allows_one_after_discharge(rt, world, frozen):
    admission = Admission("701", TODAY, world.tariff_id)
    with pytest.raises(LedgerConflict) as refusal:
        with rt.db.transaction() as s:
            admit(s, s.get(Portal, world.portal_id), admission, STAFF, "admit-again")
    assert refusal.value.field == "deal_id"
    frozen.set_local("2026-12-03 10:00")
    with rt.db.transaction() as s:
        discharge(s, s.get(Portal, world.portal_id), "701", TODAY + timedelta(days=1), "cash", FINANCE, "out")
    with rt.db.transaction() as s:
        reopened = admit(s, s.get(Portal, world.portal_id), admission, STAFF, "admit-again")
        assert (reopened.status, reopened.id != world.account_id) == ("open", True)
    with rt.db.transaction() as s:
        statuses = s.scalars(
            select(StayAccount.status).where(
                StayAccount.deal_id == "701", StayAccount.portal_id == world.portal_id
            )
        ).all()
    assert sorted(statuses) == ["closed", "open"]


@pytest.mark.parametrize("rate", ["-100.00", "-0.01"])
def test_the_api_refuses_a_negative_tariff_naming_the_field(rt, roles, rate):
    response = roles["admin"].post("/api/v1/tariffs", json={"name": "Минус", "daily_rate": rate})
    assert response.status_code == 422, response.get_json()
    assert list(response.get_json()["error"]["fields"]) == ["daily_rate"]
    with rt.db.transaction() as s:
        assert s.scalars(select(Tariff)).all() == []


def test_approval_without_a_proper_consent_is_refused_naming_the_field(rt, world, frozen):
    with rt.db.transaction() as s:
        held, _ = request_purchase(
            s, s.get(Portal, world.portal_id), "702", 900_000, world.article_id, "Ходунки", FINANCE, "buy-702"
        )
    good = Consent("Петров Иван", "in_person", frozen.now - timedelta(minutes=1))
    cases = [
        (Consent("  ", "phone", good.given_at), "consent.given_by"),
        (Consent("Петров Иван", "telepathy", good.given_at), "consent.channel"),
        (Consent("Петров Иван", "phone", good.given_at.replace(tzinfo=None)), "consent.given_at"),
        (Consent("Петров Иван", "phone", frozen.now + timedelta(hours=1)), "consent.given_at"),
    ]
    before = _entries(rt)
    for consent, field in cases:
        with pytest.raises(LedgerError) as refusal:
            with rt.db.transaction() as s:
                approve_purchase(
                    s, s.get(Portal, world.portal_id), "702", held.id, consent, FINANCE, "ok-702"
                )
        assert refusal.value.field == field
    assert _entries(rt) == before
    with rt.db.transaction() as s:
        request, entry = approve_purchase(
            s, s.get(Portal, world.portal_id), "702", held.id, good, FINANCE, "ok-702"
        )
        assert (request.status, request.consent_by, request.entry_id) == ("approved", "Петров Иван", entry.id)


# --- 3. tamper evidence -------------------------------------------------------------------------------

TAMPERING = {
    "amount": ("UPDATE ledger_entries SET amount_minor = amount_minor + 1 WHERE id = :id", {}),
    "reason": ("UPDATE ledger_entries SET reason = 'перевязка (исправлено)' WHERE id = :id", {}),
    "actor": ("UPDATE ledger_entries SET actor = 'apikey:999' WHERE id = :id", {}),
    "created_at": (
        "UPDATE ledger_entries SET created_at = :moment WHERE id = :id",
        {"moment": datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)},
    ),
    "sign": ("UPDATE ledger_entries SET sign = -sign WHERE id = :id AND kind = 'reversal'", {}),
}


def tamper(rt, how: str, entry_id: int) -> None:
    sql, params = TAMPERING[how]
    statement = text(sql).bindparams(bindparam("moment", type_=UtcDateTime())) if params else text(sql)
    with rt.db.engine.begin() as conn:
        assert conn.execute(statement, {"id": entry_id, **params}).rowcount == 1


def verify(rt, portal_id: int | None = None) -> tuple[int, list[ChainBreak]]:
    with rt.db.transaction() as s:
        return verify_chains(s, portal_id)


def test_an_untouched_ledger_verifies(rt, world):
    assert verify(rt) == (world.entries, [])


@pytest.mark.parametrize("how", ["amount", "reason", "actor", "created_at"])
def test_editing_a_stored_entry_names_exactly_that_entry(rt, world, how):
    with rt.db.transaction() as s:
        seq = s.get(LedgerEntry, world.charge_id).seq
    tamper(rt, how, world.charge_id)
    checked, breaks = verify(rt)
    assert checked == world.entries
    assert len(breaks) == 1
    (found,) = breaks
    assert (found.account_id, found.entry_id, found.seq) == (world.account_id, world.charge_id, seq)
    assert "edited" in found.reason
    assert f"entry {world.charge_id} (seq {seq})" in str(found)
    assert verify(rt, world.other_portal_id) == (1, [])  # other portals are not implicated


@pytest.mark.parametrize("entry", ["deposit_id", "charge_id", "purchase_id"])
def test_editing_a_stored_running_balance_names_exactly_that_entry(rt, world, entry):
    """The running balance is outside the hash (entries hashed before it existed stay valid), so verify
    recomputes it: the edited entry is named although its hash still matches."""
    entry_id = getattr(world, entry)
    with rt.db.transaction() as s:
        seq = s.get(LedgerEntry, entry_id).seq
    with rt.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE ledger_entries SET balance_after_minor = balance_after_minor + 1 WHERE id = :id"),
            {"id": entry_id},
        )
    checked, breaks = verify(rt)
    assert checked == world.entries
    assert [(b.account_id, b.entry_id, b.seq) for b in breaks] == [(world.account_id, entry_id, seq)]
    assert "stored balance after" in breaks[0].reason and "differs from the running sum" in breaks[0].reason


def test_flipping_a_reversals_direction_is_detected(rt, world):
    with rt.db.transaction() as s:
        reversal = s.scalar(select(LedgerEntry).where(LedgerEntry.kind == "reversal"))
        reversal_id = reversal.id
    tamper(rt, "sign", reversal_id)
    assert [b.entry_id for b in verify(rt)[1]] == [reversal_id]


def test_a_forger_who_rehashes_the_edited_entry_is_caught_by_its_running_balance(rt, world):
    with rt.db.transaction() as s:
        entry = s.get(LedgerEntry, world.charge_id)
        entry.amount_minor = 1
        entry.hash = entry_hash(entry.prev_hash, {n: getattr(entry, n) for n in CHAINED_FIELDS})
        seq = entry.seq
    (found,) = verify(rt)[1]
    assert (found.entry_id, found.seq, found.account_id) == (world.charge_id, seq, world.account_id)
    assert "differs from the running sum" in found.reason


def test_a_forger_who_rehashes_and_fixes_the_running_balance_is_caught_at_the_next_one(rt, world):
    with rt.db.transaction() as s:
        entry = s.get(LedgerEntry, world.charge_id)
        entry.balance_after_minor += entry.sign * (1 - entry.amount_minor)
        entry.amount_minor = 1
        entry.hash = entry_hash(entry.prev_hash, {n: getattr(entry, n) for n in CHAINED_FIELDS})
        successor = s.scalar(
            select(LedgerEntry).where(
                LedgerEntry.account_id == entry.account_id, LedgerEntry.seq == entry.seq + 1
            )
        )
        successor_id, successor_seq = successor.id, successor.seq
    (found,) = verify(rt)[1]
    assert (found.entry_id, found.seq, found.account_id) == (successor_id, successor_seq, world.account_id)
    assert "predecessor" in found.reason


def test_deleting_a_middle_entry_is_reported_as_a_sequence_gap(rt, world):
    with rt.db.transaction() as s:
        entry = s.get(LedgerEntry, world.charge_id)
        last_seq = s.scalar(
            select(func.max(LedgerEntry.seq)).where(LedgerEntry.account_id == world.account_id)
        )
        successor = s.scalar(
            select(LedgerEntry.id).where(
                LedgerEntry.account_id == entry.account_id, LedgerEntry.seq == entry.seq + 1
            )
        )
        seq = entry.seq
    assert 1 < seq < last_seq  # a middle entry
    with rt.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE id = :id"), {"id": world.charge_id})
    checked, breaks = verify(rt)
    assert checked == world.entries - 1
    (found,) = breaks
    assert (found.account_id, found.entry_id, found.seq) == (world.account_id, successor, seq + 1)
    assert f"expected {seq}" in found.reason and "missing" in found.reason


def test_each_broken_account_is_named_once(rt, world):
    with rt.db.transaction() as s:
        first_of_second = s.scalar(
            select(LedgerEntry.id).where(
                LedgerEntry.account_id == world.second_account_id, LedgerEntry.seq == 1
            )
        )
    tamper(rt, "amount", world.deposit_id)
    tamper(rt, "amount", world.charge_id)  # a later break on the same account is not a second report
    tamper(rt, "actor", first_of_second)
    breaks = verify(rt)[1]
    assert sorted((b.account_id, b.entry_id) for b in breaks) == sorted(
        [(world.account_id, world.deposit_id), (world.second_account_id, first_of_second)]
    )


# --- the command ----------------------------------------------------------------------------------------


def _ledger_cli():
    from widget_server.cli import cli

    if "ledger" not in cli.commands:
        pytest.skip("the `clinicbridge ledger` command group is not registered")
    return cli


def test_cli_ledger_verify_passes_an_intact_ledger_and_names_a_tampered_entry(rt, world):
    from click.testing import CliRunner

    cli = _ledger_cli()
    intact = CliRunner().invoke(cli, ["ledger", "verify"], catch_exceptions=False)
    assert intact.exit_code == 0, intact.output
    assert f"{world.entries} entries checked, all chains intact" in intact.output

    tamper(rt, "reason", world.charge_id)
    broken = CliRunner().invoke(cli, ["ledger", "verify"], catch_exceptions=False)
    assert broken.exit_code == 1
    assert f"account {world.account_id}: entry {world.charge_id} (seq" in broken.output
    assert "1 account chain(s) broken" in broken.output

    other = CliRunner().invoke(cli, ["ledger", "verify", "--portal", "other-clinic"], catch_exceptions=False)
    assert other.exit_code == 0 and "1 entries checked" in other.output
    unknown = CliRunner().invoke(cli, ["ledger", "verify", "--portal", "nowhere"])
    assert unknown.exit_code != 0 and "--portal" in unknown.output


def test_cli_ledger_verify_names_an_entry_whose_stored_running_balance_is_wrong(rt, world):
    from click.testing import CliRunner

    cli = _ledger_cli()
    with rt.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE ledger_entries SET balance_after_minor = 0 WHERE id = :id"),
            {"id": world.purchase_id},
        )
    broken = CliRunner().invoke(cli, ["ledger", "verify"], catch_exceptions=False)
    assert broken.exit_code == 1
    assert f"account {world.account_id}: entry {world.purchase_id} (seq" in broken.output
    assert "stored balance after 0 differs from the running sum" in broken.output
