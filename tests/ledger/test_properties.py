"""Property tests: random stays, checked against a small model after every step.

Hypothesis generates a list of operations (top-ups, one-off charges with and without an override,
purchases below and above the consent threshold, approvals and refusals, reversals by an admin and by a
nurse, tariff changes, days passing with the daily job, and a discharge at the end). They run through the
domain functions (and, in the second test, through the HTTP API with decimal strings). After every step:

* balance (`balance_minor`, the head entry's stored running balance) == Σ sign·amount of the entries ==
  the statement's last running balance == what the model expects, and every entry's stored running
  balance is the sum of the entries up to it;
* holds == the model's pending, unexpired purchase requests, and available == balance − holds;
* a refused operation changed nothing (entries, balance, holds, purchase statuses, tariff history);
* the hash chains verify, and sequence numbers run 1..n.

At the end, editing any one stored entry (its running balance included, which is outside the hash) makes
`verify_chains` name exactly that entry.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, func, select, text

from widget_server.clock import local_today as clinic_today
from widget_server.ledger import (
    Actor,
    Admission,
    Consent,
    LedgerConflict,
    LedgerError,
    LedgerForbidden,
    admit,
    approve_purchase,
    balance_minor,
    change_tariff,
    charge,
    deposit,
    discharge,
    reject_purchase,
    request_purchase,
    reverse,
    stay_summary,
    verify_chains,
)
from widget_server.ledger.daily import post_daily_charges
from widget_server.ledger.posting import holds_minor
from widget_server.ledger.statement import statement_rows
from widget_server.models import (
    PAYMENT_METHODS,
    ExpenseArticle,
    LedgerEntry,
    Portal,
    PurchaseRequest,
    StayAccount,
    Tariff,
    TariffAssignment,
    implied_roles,
)
from widget_server.models.base import UtcDateTime

ACTORS = {role: Actor(f"test:{role}", "api", implied_roles([role])) for role in ("staff", "finance", "admin")}
RATES = {"standard": 350_000, "comfort": 500_000, "free": 0}
THRESHOLD = 500_000
HOLD = timedelta(hours=72)
ADMISSION = date(2026, 12, 1)

_portals = itertools.count(1)
_keys = itertools.count(1)

amounts = st.integers(min_value=1, max_value=2_000_000)
purchase_amounts = st.one_of(
    st.integers(min_value=THRESHOLD + 1, max_value=2_000_000),  # needs consent: a hold
    st.integers(min_value=1, max_value=THRESHOLD),  # charged at once
)
operations = st.one_of(
    st.tuples(st.just("deposit"), st.integers(1, 5_000_000), st.sampled_from(PAYMENT_METHODS)),
    st.tuples(st.just("charge"), amounts, st.sampled_from(["finance", "admin"]), st.booleans()),
    # A purchase, then (as the next step) possibly a decision on the newest request.
    st.tuples(
        st.just("purchase"),
        purchase_amounts,
        st.sampled_from(["approve", "approve", "reject", "bad consent", None]),
    ),
    st.tuples(st.just("approve"), st.integers(0, 20), st.sampled_from([True, True, False])),
    st.tuples(st.just("reject"), st.integers(0, 20)),
    st.tuples(st.just("reverse"), st.integers(0, 60), st.sampled_from(["admin", "admin", "staff"])),
    st.tuples(st.just("tariff"), st.sampled_from(sorted(RATES)), st.integers(-2, 3)),
    st.tuples(st.just("advance"), st.integers(0, 2)),
)


@dataclass
class Model:
    """What the stay should look like, computed without the ledger."""

    balance: int
    schedule: dict[date, int]
    last_charged: date | None = None
    requests: dict[int, tuple[int, str, datetime]] = field(default_factory=dict)
    """id → (amount, status, expires_at)"""
    reversed_ids: set[int] = field(default_factory=set)

    def rate_on(self, day: date) -> int:
        due = [d for d in self.schedule if d <= day]
        return self.schedule[max(due)] if due else 0

    @property
    def first_uncharged(self) -> date:
        return ADMISSION if self.last_charged is None else self.last_charged + timedelta(days=1)

    def holds(self, now: datetime) -> int:
        return sum(
            a for a, status, expires in self.requests.values() if status == "pending" and expires > now
        )

    def daily_through(self, day: date) -> list[tuple[date, int]]:
        """(service date, amount) of the daily charges due through `day`; the model moves on."""
        due = []
        current = self.first_uncharged
        while current <= day:
            if self.rate_on(current) > 0:
                due.append((current, self.rate_on(current)))
                self.last_charged = current
            current += timedelta(days=1)
        return due


@dataclass
class Stay:
    portal_id: int
    account_id: int
    tariffs: dict[str, int]
    article_id: int
    deal: str = "1001"


def local_today(frozen) -> date:  # type: ignore[no-untyped-def]
    return clinic_today("Europe/Moscow", frozen.now)


def open_stay(rt, make_portal, frozen, opening: int) -> Stay:
    frozen.set_local("2026-12-01 10:00")
    n = next(_portals)
    portal = make_portal(slug=f"prop-{n}")
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        row.settings = {"ledger": {"purchase_threshold_minor": THRESHOLD, "overdraft_minor": 0}}
        tariffs = {
            name: Tariff(portal_id=portal.id, name=name, daily_rate_minor=rate)
            for name, rate in RATES.items()
        }
        article = ExpenseArticle(portal_id=portal.id, name="Лекарства")
        s.add_all([*tariffs.values(), article])
        s.flush()
        account = admit(
            s,
            row,
            Admission(
                "1001", ADMISSION, tariffs["standard"].id, deposit_minor=opening, deposit_method="cash"
            ),
            ACTORS["finance"],
            f"admit-{n}",
        )
        return Stay(portal.id, account.id, {k: t.id for k, t in tariffs.items()}, article.id)


def snapshot(rt, stay: Stay) -> tuple:
    with rt.db.transaction() as s:
        return (
            tuple(
                s.scalars(
                    select(LedgerEntry.id)
                    .where(LedgerEntry.account_id == stay.account_id)
                    .order_by(LedgerEntry.id)
                )
            ),
            balance_minor(s, stay.account_id),
            holds_minor(s, stay.account_id),
            tuple(
                s.execute(
                    select(PurchaseRequest.id, PurchaseRequest.status)
                    .where(PurchaseRequest.account_id == stay.account_id)
                    .order_by(PurchaseRequest.id)
                ).all()
            ),
            s.scalar(
                select(func.count())
                .select_from(TariffAssignment)
                .where(TariffAssignment.account_id == stay.account_id)
            ),
            s.get(StayAccount, stay.account_id).status,
        )


def check_invariants(rt, stay: Stay, model: Model, now: datetime) -> None:
    with rt.db.transaction() as s:
        entries = list(
            s.scalars(
                select(LedgerEntry).where(LedgerEntry.account_id == stay.account_id).order_by(LedgerEntry.seq)
            )
        )
        balance = balance_minor(s, stay.account_id)
        rows = statement_rows(s, s.get(StayAccount, stay.account_id))
        holds = holds_minor(s, stay.account_id)
        summary = stay_summary(s, s.get(Portal, stay.portal_id), s.get(StayAccount, stay.account_id))
        _checked, breaks = verify_chains(s, stay.portal_id)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert balance == sum(e.sign * e.amount_minor for e in entries) == model.balance
    running = list(itertools.accumulate(e.sign * e.amount_minor for e in entries))
    assert [e.balance_after_minor for e in entries] == running
    assert [r.balance_minor for r in rows] == running
    assert (rows[-1].balance_minor if rows else 0) == balance
    assert holds == model.holds(now) == summary.holds_minor
    assert summary.balance_minor == balance
    assert summary.available_minor == balance - holds
    assert breaks == []


def apply(rt, stay: Stay, model: Model, op: tuple, frozen) -> str:
    """Run one operation and update the model; "ok" or "noop" (nothing to do, nothing changed). A refusal
    propagates after checking that the model predicted it, and the transaction is rolled back."""
    kind, *args = op
    key = f"op-{next(_keys)}"
    now = frozen.now

    def available() -> int:
        return model.balance - model.holds(now)

    with rt.db.transaction() as s:
        portal = s.get(Portal, stay.portal_id)
        if kind == "deposit":
            amount, method = args
            deposit(s, portal, stay.deal, amount, method, "Иванова", ACTORS["finance"], key)
            model.balance += amount
        elif kind == "charge":
            amount, role, override = args
            expect_refusal = (override and role != "admin") or (not override and available() < amount)
            try:
                charge(
                    s,
                    portal,
                    stay.deal,
                    amount,
                    stay.article_id,
                    "разовое",
                    ACTORS[role],
                    key,
                    override=override,
                )
            except LedgerForbidden:
                assert override and role != "admin"
                raise
            except LedgerError as refusal:
                assert expect_refusal and (refusal.code, refusal.field) == ("insufficient_funds", "amount")
                raise
            assert not expect_refusal
            model.balance -= amount
        elif kind == "purchase":
            (amount,) = args
            enough = available() >= amount
            try:
                held, entry = request_purchase(
                    s, portal, stay.deal, amount, stay.article_id, "закупка", ACTORS["finance"], key
                )
            except LedgerError as refusal:
                assert not enough and refusal.code == "insufficient_funds", refusal
                raise
            assert enough
            if amount <= THRESHOLD:
                assert held is None and entry is not None and entry.kind == "purchase"
                model.balance -= amount
            else:
                assert entry is None and held.status == "pending"
                model.requests[held.id] = (amount, "pending", now + HOLD)
        elif kind in ("approve", "reject"):
            if not model.requests:
                return "noop"
            request_id = sorted(model.requests)[args[0] % len(model.requests)]
            amount, status, expires = model.requests[request_id]
            if kind == "approve":
                consent_ok = args[1]
                consent = Consent("Иванова Мария" if consent_ok else " ", "phone", now - timedelta(minutes=1))
                try:
                    approve_purchase(s, portal, stay.deal, request_id, consent, ACTORS["finance"], key)
                except LedgerConflict:
                    assert consent_ok and (status != "pending" or expires <= now)
                    raise
                except LedgerError as refusal:
                    assert not consent_ok and refusal.field == "consent.given_by"
                    raise
                assert consent_ok and status == "pending" and expires > now
                model.requests[request_id] = (amount, "approved", expires)
                model.balance -= amount
            else:
                try:
                    reject_purchase(s, portal, stay.deal, request_id, "отказ", ACTORS["finance"])
                except LedgerConflict:
                    assert status not in ("pending", "rejected")
                    raise
                if status == "rejected":
                    return "noop"
                assert status == "pending"
                model.requests[request_id] = (amount, "rejected", expires)
        elif kind == "reverse":
            index, role = args
            entries = list(
                s.scalars(
                    select(LedgerEntry)
                    .where(LedgerEntry.account_id == stay.account_id)
                    .order_by(LedgerEntry.seq)
                )
            )
            target = entries[index % len(entries)]
            try:
                reverse(s, portal, stay.deal, target.id, "ошибка", ACTORS[role], key)
            except LedgerForbidden:
                assert role == "staff"
                raise
            except LedgerConflict:
                assert role == "admin" and (target.kind == "reversal" or target.id in model.reversed_ids)
                raise
            assert role == "admin" and target.kind != "reversal" and target.id not in model.reversed_ids
            model.reversed_ids.add(target.id)
            model.balance -= target.sign * target.amount_minor
        elif kind == "tariff":
            name, offset = args
            effective = local_today(frozen) + timedelta(days=offset)
            try:
                change_tariff(s, portal, stay.deal, stay.tariffs[name], effective, ACTORS["finance"])
            except LedgerError as refusal:
                assert refusal.field == "effective_from" and effective < model.first_uncharged
                raise
            assert effective >= model.first_uncharged
            model.schedule[effective] = RATES[name]
        else:
            raise AssertionError(kind)
    return "ok"


def advance(rt, stay: Stay, model: Model, days: int, frozen) -> None:
    frozen.now += timedelta(days=days)
    today = local_today(frozen)
    before = snapshot(rt, stay)[0]
    post_daily_charges(rt.db.sessions, stay.portal_id, today)
    due = model.daily_through(today)
    with rt.db.transaction() as s:
        new = s.execute(
            select(LedgerEntry.kind, LedgerEntry.service_date, LedgerEntry.amount_minor)
            .where(LedgerEntry.account_id == stay.account_id, LedgerEntry.id.not_in(before))
            .order_by(LedgerEntry.seq)
        ).all()
    assert [tuple(row) for row in new] == [("daily_charge", day, rate) for day, rate in due]
    model.balance -= sum(rate for _day, rate in due)


def finish(rt, stay: Stay, model: Model, frozen) -> None:
    """Discharge the next day: the remaining days are charged, holds cancelled, a positive rest refunded."""
    frozen.now += timedelta(days=1)
    today = local_today(frozen)
    due = model.daily_through(today - timedelta(days=1))
    model.balance -= sum(rate for _day, rate in due)
    with rt.db.transaction() as s:
        discharge(s, s.get(Portal, stay.portal_id), stay.deal, today, "card", ACTORS["finance"], "out")
    refund = max(model.balance, 0)
    model.balance -= refund
    model.requests = {
        rid: (a, "cancelled" if st_ == "pending" else st_, e) for rid, (a, st_, e) in model.requests.items()
    }
    with rt.db.transaction() as s:
        account = s.get(StayAccount, stay.account_id)
        kinds = [
            (kind, amount)
            for kind, amount in s.execute(
                select(LedgerEntry.kind, LedgerEntry.amount_minor)
                .where(LedgerEntry.account_id == stay.account_id)
                .order_by(LedgerEntry.seq)
            )
        ]
        statuses = dict(
            s.execute(
                select(PurchaseRequest.id, PurchaseRequest.status).where(
                    PurchaseRequest.account_id == stay.account_id
                )
            ).all()
        )
    assert (account.status, account.discharge_date) == ("closed", today)
    assert statuses == {rid: status for rid, (_a, status, _e) in model.requests.items()}
    if refund:
        assert kinds[-1] == ("refund", refund)
    check_invariants(rt, stay, model, frozen.now)
    assert model.balance <= 0  # nothing left on a closed stay but, possibly, a debt
    # A closed stay refuses new money movements (only an admin reversal is still possible).
    before = snapshot(rt, stay)
    late = [
        lambda s, p: deposit(s, p, stay.deal, 100, "cash", None, ACTORS["finance"], "late-1"),
        lambda s, p: charge(
            s, p, stay.deal, 100, stay.article_id, None, ACTORS["admin"], "late-2", override=True
        ),
    ]
    for operation in late:
        with pytest.raises(LedgerConflict) as refusal:
            with rt.db.transaction() as s:
                operation(s, s.get(Portal, stay.portal_id))
        assert refusal.value.field == "account"
        assert snapshot(rt, stay) == before


TAMPERABLE = ["amount_minor", "reason", "actor", "created_at", "balance_after_minor"]


def tamper_and_verify(rt, stay: Stay, index: int, column: str) -> None:
    with rt.db.transaction() as s:
        entries = list(
            s.scalars(
                select(LedgerEntry).where(LedgerEntry.account_id == stay.account_id).order_by(LedgerEntry.seq)
            )
        )
    target = entries[index % len(entries)]
    old = getattr(target, column)
    forge = {
        "amount_minor": lambda value: value + 1,
        "reason": lambda value: (value or "") + " (исправлено)",
        "actor": lambda value: value + "-forged",
        "created_at": lambda value: value + timedelta(seconds=1),
        "balance_after_minor": lambda value: value - 1,
    }
    new = forge[column](old)
    statement = text(f"UPDATE ledger_entries SET {column} = :value WHERE id = :id")
    if column == "created_at":
        statement = statement.bindparams(bindparam("value", type_=UtcDateTime()))
    with rt.db.engine.begin() as conn:
        conn.execute(statement, {"value": new, "id": target.id})
    try:
        with rt.db.transaction() as s:
            checked, breaks = verify_chains(s, stay.portal_id)
        assert checked == len(entries)
        assert [(b.account_id, b.entry_id, b.seq) for b in breaks] == [
            (stay.account_id, target.id, target.seq)
        ]
        # The running balance is derived and not hashed: verify recomputes it instead.
        expected = "differs from the running sum" if column == "balance_after_minor" else "edited"
        assert expected in breaks[0].reason
    finally:
        with rt.db.engine.begin() as conn:
            conn.execute(statement, {"value": old, "id": target.id})
    with rt.db.transaction() as s:
        assert verify_chains(s, stay.portal_id)[1] == []


def steps(ops: list[tuple]) -> list[tuple]:
    decisions = {
        "approve": ("approve", -1, True),
        "bad consent": ("approve", -1, False),
        "reject": ("reject", -1),
    }
    expanded: list[tuple] = []
    for op in ops:
        if op[0] == "purchase":
            expanded.append(op[:2])
            if op[2] is not None:
                expanded.append(decisions[op[2]])
        else:
            expanded.append(op)
    return expanded


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# A story that reaches every branch, whatever the random examples happen to cover.
@example(
    opening=5_000_000,
    ops=[
        ("deposit", 1_000_000, "card"),  # seq 2
        ("purchase", 800_000, "approve"),  # a hold, approved: seq 3
        ("purchase", 700_000, "reject"),
        ("purchase", 600_000, "bad consent"),  # stays pending
        ("approve", 0, True),  # the first request again: already approved
        ("reject", 1),  # the second again: already rejected, nothing changes
        ("charge", 100_000, "admin", True),  # seq 4, with an override
        ("charge", 100_000, "finance", True),  # an override needs an admin
        ("charge", 90_000_000, "finance", False),  # insufficient funds
        ("reverse", 1, "staff"),  # a nurse may not reverse
        ("reverse", 1, "admin"),  # reverses the deposit (seq 2) as seq 5
        ("reverse", 4, "admin"),  # seq 5, a reversal, cannot be reversed
        ("reverse", 1, "admin"),  # the deposit once more
        ("tariff", "comfort", 1),  # from 2 Dec
        ("advance", 2),  # 1-3 Dec charged
        ("advance", 2),  # 4-5 Dec; the pending hold expired on 4 Dec
        ("approve", 2, True),  # too late
        ("reject", 2),
        ("tariff", "free", -2),  # 3 Dec is charged already
        ("tariff", "free", 0),  # the same day as today's charge: refused too
        ("tariff", "free", 1),
        ("advance", 1),  # free: nothing charged
        ("purchase", 100, None),  # charged at once
        ("purchase", 700_000, None),  # still pending at discharge: cancelled
    ],
    tamper_index=2,
    tamper_column="created_at",
)
@given(
    opening=st.integers(0, 3).flatmap(
        lambda solvent: st.integers(5_000_000, 20_000_000) if solvent else st.integers(1, 5_000_000)
    ),
    ops=st.lists(operations, min_size=4, max_size=30),
    tamper_index=st.integers(min_value=0, max_value=200),
    tamper_column=st.sampled_from(TAMPERABLE),
)
def test_random_stays_keep_every_invariant(
    rt, make_portal, frozen, opening, ops, tamper_index, tamper_column
):
    stay = open_stay(rt, make_portal, frozen, opening)
    model = Model(balance=opening, schedule={ADMISSION: RATES["standard"]})
    check_invariants(rt, stay, model, frozen.now)
    for op in steps(ops):
        if op[0] == "advance":
            advance(rt, stay, model, op[1], frozen)
            event("advance")
        else:
            before = snapshot(rt, stay)
            try:
                outcome = apply(rt, stay, model, op, frozen)
            except LedgerError as refusal:
                outcome = f"refused ({refusal.field})"
            event(f"{op[0]}: {outcome}")
            if outcome != "ok":  # refused or a no-op
                assert snapshot(rt, stay) == before, (op, outcome)
        check_invariants(rt, stay, model, frozen.now)
    finish(rt, stay, model, frozen)
    tamper_and_verify(rt, stay, tamper_index, tamper_column)


# --- the same through the HTTP API, with decimal strings ---------------------------------------------------


def as_decimal_string(minor: int, style: int) -> str:
    rubles, kopecks = divmod(minor, 100)
    if style == 1 and kopecks == 0:
        return str(rubles)
    if style == 2 and kopecks % 10 == 0:
        return f"{rubles}.{kopecks // 10}"
    return f"{rubles}.{kopecks:02d}"


def rubles(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


api_amounts = st.tuples(st.integers(min_value=1, max_value=3_000_000), st.integers(0, 2))
api_operations = st.one_of(
    st.tuples(st.just("deposit"), api_amounts),
    st.tuples(st.just("charge"), api_amounts, st.sampled_from(["finance", "admin"]), st.booleans()),
    st.tuples(st.just("purchase"), api_amounts),
    st.tuples(st.just("bad_amount"), st.sampled_from(["0.00", "-5.00", "1.234", "abc", "", 5, 12.5, None])),
)


@settings(
    max_examples=12,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(
    opening=(100_000, 1),  # "1000"
    ops=[
        ("deposit", (1_230, 2)),  # "12.3"
        ("charge", (200_000, 0), "finance", False),  # more than available
        ("charge", (200_000, 0), "finance", True),  # an override needs an admin
        ("charge", (200_000, 0), "admin", True),  # into debt, by an admin
        ("deposit", (2_000_000, 1)),
        ("purchase", (600_000, 0)),  # a hold
        ("purchase", (500_000, 0)),  # at the threshold: charged at once
        ("purchase", (900_000, 0)),  # more than available after the hold
        ("bad_amount", "1.234"),
        ("bad_amount", 12.5),
    ],
)
@given(opening=api_amounts, ops=st.lists(api_operations, max_size=10))
def test_random_api_sessions_agree_with_the_model(rt, roles, catalogue, frozen, opening, ops):
    deal = f"api-{next(_portals)}"
    frozen.set_local("2026-12-01 10:00")
    finance, admin = roles["finance"], roles["admin"]
    base = f"/api/v1/deals/{deal}/stay"
    admitted = finance.post(
        base,
        key=f"{deal}-admit",
        json={
            "admission_date": "2026-12-01",
            "tariff_id": catalogue["standard"],
            "deposit": {"amount": as_decimal_string(*opening), "method": "cash"},
        },
    )
    assert admitted.status_code == 201, admitted.get_json()
    balance, holds = opening[0], 0

    for n, op in enumerate(ops):
        key = f"{deal}-{n}"
        before = finance.get(f"{base}/statement").get_json()["rows"]
        available = balance - holds
        if op[0] == "deposit":
            response = finance.post(
                f"{base}/deposits", key=key, json={"amount": as_decimal_string(*op[1]), "method": "card"}
            )
            assert response.status_code == 201, response.get_json()
            balance += op[1][0]
        elif op[0] == "charge":
            (amount, style), role, override = op[1], op[2], op[3]
            api = admin if role == "admin" else finance
            response = api.post(
                f"{base}/charges",
                key=key,
                json={
                    "amount": as_decimal_string(amount, style),
                    "article_id": catalogue["drugs"],
                    "override": override,
                },
            )
            if override and role != "admin":
                assert response.status_code == 403
            elif not override and amount > available:
                assert response.status_code == 422
                assert response.get_json()["error"]["code"] == "insufficient_funds"
            else:
                assert response.status_code == 201, response.get_json()
                balance -= amount
        elif op[0] == "purchase":
            amount, style = op[1]
            response = finance.post(
                f"{base}/purchases",
                key=key,
                json={"amount": as_decimal_string(amount, style), "description": "закупка"},
            )
            if amount > available:
                assert response.status_code == 422
            else:
                assert response.status_code == 201, response.get_json()
                if amount > THRESHOLD:
                    holds += amount
                else:
                    balance -= amount
        else:
            response = finance.post(f"{base}/deposits", key=key, json={"amount": op[1], "method": "cash"})
            assert response.status_code == 422
            assert list(response.get_json()["error"]["fields"]) == ["amount"]

        if response.status_code >= 400:
            assert finance.get(f"{base}/statement").get_json()["rows"] == before
        summary = finance.get(base).get_json()
        rows = finance.get(f"{base}/statement").get_json()["rows"]
        assert (summary["balance"], summary["holds"], summary["available"]) == (
            rubles(balance),
            rubles(holds),
            rubles(balance - holds),
        )
        assert rows[-1]["balance"] == rubles(balance)
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    with rt.db.transaction() as s:
        assert verify_chains(s)[1] == []
