"""The ledger under real concurrency: threads against the Flask app and the daily job, on the test database.

SQLite serialises writers with BEGIN IMMEDIATE (30 s busy timeout), PostgreSQL with row locks; either way
the outcome must be the one a serial execution would give: unique, gap-free sequence numbers, an intact
hash chain, exact balances, one entry per idempotency key and one daily charge per account and day.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import Api
from widget_server.jobs.ledger import run_daily_charges
from widget_server.ledger import Actor, LedgerConflict, balance_minor, discharge, verify_chains
from widget_server.ledger import daily as daily_module
from widget_server.ledger.statement import statement_rows
from widget_server.models import LedgerEntry, Portal, StayAccount, implied_roles

THREADS = 8


def admit(finance: Api, deal: str, tariff_id: int, admission: str, deposit: str) -> None:
    response = finance.post(
        f"/api/v1/deals/{deal}/stay",
        key=f"admit-{deal}",
        json={
            "admission_date": admission,
            "tariff_id": tariff_id,
            "deposit": {"amount": deposit, "method": "cash"},
        },
    )
    assert response.status_code == 201, response.get_json()


def account_of(rt, deal: str) -> StayAccount:
    with rt.db.transaction() as s:
        return s.scalars(
            select(StayAccount).where(StayAccount.deal_id == deal).order_by(StayAccount.id)
        ).first()


def entries_of(rt, account_id: int) -> list[LedgerEntry]:
    with rt.db.transaction() as s:
        return list(
            s.scalars(
                select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.seq)
            )
        )


def entries_balance(rt, account_id: int) -> int:
    with rt.db.transaction() as s:
        return balance_minor(s, account_id)


def assert_consistent(rt, account_id: int) -> list[LedgerEntry]:
    """Gap-free seqs from 1, a verifying chain, and balance == Σ sign·amount == statement's last balance."""
    entries = entries_of(rt, account_id)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    with rt.db.transaction() as s:
        _checked, breaks = verify_chains(s)
        balance = balance_minor(s, account_id)
        rows = statement_rows(s, s.get(StayAccount, account_id))
    assert breaks == []
    assert balance == sum(e.sign * e.amount_minor for e in entries)
    assert rows[-1].balance_minor == balance
    return entries


def run_in_threads(work, items: list, threads: int = THREADS) -> list:
    """`work(item)` for every item on a pool of `threads` threads (all started before the first item is
    handed out); results in item order, exceptions re-raised here."""
    barrier = threading.Barrier(threads)

    def start(_: int) -> None:
        barrier.wait()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(start, range(threads)))  # every worker thread exists before the work is handed out
        return list(pool.map(work, items))


class PerThreadApi:
    """One Flask test client per thread, all with the same API key."""

    def __init__(self, app, key: str) -> None:  # type: ignore[no-untyped-def]
        self.app, self.key, self.local = app, key, threading.local()

    def __call__(self) -> Api:
        if not hasattr(self.local, "api"):
            self.local.api = Api(self.app.test_client(), self.key)
        return self.local.api


@pytest.fixture
def stay(rt, app, roles, catalogue, frozen):  # type: ignore[no-untyped-def]
    frozen.set_local("2026-12-02 10:00")
    admit(roles["finance"], "801", catalogue["standard"], "2026-12-02", "100000.00")
    return {"account_id": account_of(rt, "801").id, "finance": PerThreadApi(app, roles["finance"].key)}


def test_fifty_concurrent_charges_on_one_account_all_land_in_one_unbroken_chain(rt, stay, catalogue):
    amounts = [100 * (n + 1) for n in range(50)]  # minor units: 1.00 … 50.00 ₽, all different

    def charge(n: int):  # type: ignore[no-untyped-def]
        response = stay["finance"]().post(
            "/api/v1/deals/801/stay/charges",
            key=f"charge-{n}",
            json={"amount": f"{amounts[n] // 100}.00", "article_id": catalogue["drugs"], "reason": f"№{n}"},
        )
        return response.status_code, response.get_json()

    results = run_in_threads(charge, list(range(50)))

    assert [status for status, _ in results] == [201] * 50, [b for s, b in results if s != 201][:3]
    entries = assert_consistent(rt, stay["account_id"])
    charges = [e for e in entries if e.kind == "charge"]
    assert len(charges) == 50 and len(entries) == 51  # the opening deposit and 50 charges
    assert sorted(e.amount_minor for e in charges) == amounts
    assert {body["entry"]["id"] for _, body in results} == {e.id for e in charges}
    assert sorted(e.idempotency_key for e in charges) == sorted(f"charge:charge-{n}" for n in range(50))
    assert entries_balance(rt, stay["account_id"]) == 10_000_000 - sum(amounts)


def test_a_hundred_replays_of_one_key_post_one_charge(rt, stay, catalogue):
    body = {"amount": "1500.00", "article_id": catalogue["dressing"], "reason": "перевязка"}

    def attempt(_: int):  # type: ignore[no-untyped-def]
        waits = []
        for _try in range(2000):
            response = stay["finance"]().post("/api/v1/deals/801/stay/charges", key="one-dressing", json=body)
            if response.status_code != 409:
                return (
                    waits,
                    response.status_code,
                    response.headers.get("Idempotent-Replayed"),
                    response.get_json(),
                )
            waits.append((response.get_json()["error"]["code"], response.headers.get("Retry-After")))
            time.sleep(0.002)
        raise AssertionError("the key stayed in progress")

    results = run_in_threads(attempt, list(range(100)))

    waits = [w for waited, *_ in results for w in waited]
    assert set(waits) <= {("idempotency_in_progress", "1")}
    assert [status for _, status, _, _ in results] == [201] * 100
    assert sorted(replayed or "first" for _, _, replayed, _ in results) == ["first"] + ["true"] * 99
    assert len({body["entry"]["id"] for *_, body in results}) == 1
    entries = assert_consistent(rt, stay["account_id"])
    assert [e.kind for e in entries] == ["deposit", "charge"]
    assert entries_balance(rt, stay["account_id"]) == 10_000_000 - 150_000


@pytest.fixture
def ward(rt, roles, catalogue, frozen):  # type: ignore[no-untyped-def]
    """Five stays admitted on different days; the daily job has never run."""
    frozen.set_local("2026-11-28 09:00")
    for n in range(5):
        admit(roles["finance"], f"90{n}", catalogue["standard"], f"2026-11-{24 + n}", "100000.00")
    frozen.set_local("2026-12-02 10:00")
    return {f"90{n}": date(2026, 11, 24 + n) for n in range(5)}


def daily_days(rt) -> dict[str, list[date]]:
    with rt.db.transaction() as s:
        rows = s.execute(
            select(StayAccount.deal_id, LedgerEntry.service_date)
            .join(StayAccount, StayAccount.id == LedgerEntry.account_id)
            .where(LedgerEntry.kind == "daily_charge")
            .order_by(StayAccount.deal_id, LedgerEntry.service_date)
        ).all()
    days: dict[str, list[date]] = {}
    for deal, day in rows:
        days.setdefault(deal, []).append(day)
    return days


def expected_days(ward: dict[str, date], through: date) -> dict[str, list[date]]:
    return {
        deal: [admitted + timedelta(days=n) for n in range((through - admitted).days + 1)]
        for deal, admitted in ward.items()
    }


def test_two_concurrent_daily_runs_charge_each_account_once_per_day(rt, ward, frozen):
    outcomes = run_in_threads(lambda _: run_daily_charges(now=frozen.now), [0, 1], threads=2)

    assert daily_days(rt) == expected_days(ward, date(2026, 12, 2))
    total = sum(len(days) for days in expected_days(ward, date(2026, 12, 2)).values())
    assert sorted(outcomes) == sorted([f"portals 1 entries {total}", "portals 1 entries 0"])
    for deal in ward:
        entries = assert_consistent(rt, account_of(rt, deal).id)
        assert [e.amount_minor for e in entries if e.kind == "daily_charge"] == [350_000] * len(
            expected_days(ward, date(2026, 12, 2))[deal]
        )


def test_a_daily_run_and_api_charges_interleave_without_breaking_the_chain(
    rt, app, roles, ward, catalogue, frozen
):
    finance = PerThreadApi(app, roles["finance"].key)

    def work(n: int) -> int:
        if n == 0:
            run_daily_charges(now=frozen.now)
            return 0
        response = finance().post(
            f"/api/v1/deals/90{n % 5}/stay/charges",
            key=f"mixed-{n}",
            json={"amount": "10.00", "article_id": catalogue["drugs"]},
        )
        return response.status_code

    statuses = run_in_threads(work, list(range(16)), threads=4)

    assert statuses == [0] + [201] * 15
    assert daily_days(rt) == expected_days(ward, date(2026, 12, 2))
    for n, deal in enumerate(sorted(ward)):
        entries = assert_consistent(rt, account_of(rt, deal).id)
        assert sum(1 for e in entries if e.kind == "charge") == len([m for m in range(1, 16) if m % 5 == n])


def test_the_daily_job_run_twice_in_a_row_changes_nothing_the_second_time(rt, ward, frozen):
    first = run_daily_charges(now=frozen.now)
    after_first = daily_days(rt)
    with rt.db.transaction() as s:
        count = s.scalar(select(func.count()).select_from(LedgerEntry))
    second = run_daily_charges(now=frozen.now)

    assert after_first == expected_days(ward, date(2026, 12, 2))
    assert first.startswith("portals 1 entries ") and first != "portals 1 entries 0"
    assert second == "portals 1 entries 0"
    assert daily_days(rt) == after_first
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == count
    # The next day only that day is added.
    frozen.set_local("2026-12-03 00:30")
    assert run_daily_charges(now=frozen.now) == "portals 1 entries 5"
    assert daily_days(rt) == expected_days(ward, date(2026, 12, 3))


def wait_until_done_or_blocked(rt, done: threading.Event) -> None:
    """PostgreSQL: until `done` is set or some session of this database waits for a lock."""
    with rt.db.engine.connect() as conn:
        for _ in range(3000):
            if done.wait(0.01):
                return
            waiting = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE NOT l.granted AND a.datname = current_database()"
            ).scalar_one()
            conn.rollback()
            if waiting:
                return
    raise AssertionError("the discharge neither finished nor waited for a lock")


def test_a_discharge_racing_the_daily_job_never_leaves_a_charge_on_a_closed_stay(
    rt, roles, catalogue, frozen, monkeypatch
):
    frozen.set_local("2026-12-01 09:00")
    admit(roles["finance"], "950", catalogue["standard"], "2026-12-01", "20000.00")
    frozen.set_local("2026-12-04 09:00")
    run_daily_charges(now=frozen.now)  # 1-4 Dec charged: 14 000 of 20 000
    frozen.set_local("2026-12-05 16:00")  # discharged today: 5 Dec is not charged, 6 000 refunded
    account_id = account_of(rt, "950").id
    finance = Actor("test:finance", "api", implied_roles(["finance"]))
    outcome: list[object] = []
    discharged = threading.Event()

    def discharge_now() -> None:
        try:
            with rt.db.transaction() as s:
                discharge(s, s.get(Portal, s.get(StayAccount, account_id).portal_id), "950",
                          date(2026, 12, 5), "cash", finance, "out-950")  # fmt: skip
            outcome.append("discharged")
        except LedgerConflict as refusal:
            outcome.append(refusal)
        finally:
            discharged.set()

    original = daily_module._chunk
    racer = threading.Thread(target=discharge_now)

    def chunk_with_a_discharge_in_between(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The job has selected the open accounts and is about to charge them; the discharge arrives now.
        # Either it goes through first (nothing of the job's holds it up) or it waits on the job's lock
        # (the account row on PostgreSQL, the write lock on SQLite) and runs after the job commits.
        if not racer.is_alive() and not discharged.is_set():
            racer.start()
            if not rt.db.is_sqlite:
                wait_until_done_or_blocked(rt, discharged)
        return original(*args, **kwargs)

    monkeypatch.setattr(daily_module, "_chunk", chunk_with_a_discharge_in_between)
    try:
        run_daily_charges(now=frozen.now)
    finally:
        if racer.ident is not None:
            racer.join(60)
    assert not racer.is_alive() and len(outcome) == 1

    entries = assert_consistent(rt, account_id)
    account = account_of(rt, "950")
    days = [e.service_date for e in entries if e.kind == "daily_charge"]
    if account.status == "closed":
        # Discharge won: 5 Dec is not charged, the remainder refunded, nothing after.
        assert outcome == ["discharged"]
        assert days == [date(2026, 12, d) for d in range(1, 5)]
        assert entries_balance(rt, account_id) == 0
        assert entries[-1].kind == "refund"
    else:
        # The job won: 5 Dec is charged and the discharge was refused until that charge is reversed.
        assert isinstance(outcome[0], LedgerConflict) and outcome[0].field == "discharge_date"
        assert days == [date(2026, 12, d) for d in range(1, 6)]
