"""What the CRM shows: a note per entry, current balance fields, a low-balance task once per crossing."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import select, text

from connectors.types import NewDeal, StageRef
from widget_server.models import OutboxJob, Portal
from widget_server.sandbox.crm import SandboxCrm


@pytest.fixture
def crm(rt, clinic) -> SandboxCrm:
    return SandboxCrm(rt.db, clinic.id, timezone=clinic.timezone)


@pytest.fixture
def deal(crm, rt, clinic) -> str:
    manager = crm.seed_user("Анна Смирнова", email="anna@example.ru")
    created = crm.create_deal(
        NewDeal(name="Петров П. П.", stage=StageRef("corpus-1", "in_stay"), responsible_user_id=manager.id),
        idempotency_key="deal-1",
    )
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        portal.settings = {
            **portal.settings,
            "deal_fields": {"balance": "F-BAL", "daily_rate": "F-RATE", "paid_through": "F-PAID"},
        }
    return created.id


def _admit(roles, catalogue, deal, amount="35000.00"):
    response = roles["finance"].post(f"/api/v1/deals/{deal}/stay", json={
        "admission_date": "2026-12-01", "tariff_id": catalogue["standard"],
        "representative": {"name": "Петрова Ольга"},
        "deposit": {"amount": amount, "method": "card"}})  # fmt: skip
    assert response.status_code == 201, response.get_json()


def test_entries_reach_the_deal_feed_and_fields(roles, catalogue, frozen, crm, deal, jobs):
    frozen.set_local("2026-12-01 10:00")
    _admit(roles, catalogue, deal)
    roles["finance"].post(
        f"/api/v1/deals/{deal}/stay/charges",
        json={"amount": "1500.00", "article_id": catalogue["dressing"], "reason": "перевязка"},
    )
    jobs()
    notes = [n.replace("\xa0", " ") for n in crm.notes_for(deal)]
    assert notes == [
        "Пополнение 35 000,00 ₽. Способ: карта. Баланс: 35 000,00 ₽. Оплачено по 10.12.2026",
        "Списание 1 500,00 ₽ — Перевязочный материал. Основание: перевязка. Баланс: 33 500,00 ₽. "
        "Оплачено по 09.12.2026",
    ]
    fields = crm.get_deal(deal).fields
    assert fields["F-BAL"] == "33500.00"
    assert fields["F-RATE"] == "3500.00"
    assert fields["F-PAID"] == date(2026, 12, 9)


def test_a_burst_of_entries_needs_one_field_sync(roles, catalogue, frozen, crm, deal, jobs, rt):
    frozen.set_local("2026-12-01 10:00")
    _admit(roles, catalogue, deal)
    for n in range(5):
        roles["finance"].post(
            f"/api/v1/deals/{deal}/stay/deposits", json={"amount": "100.00", "method": "cash"}, key=f"d{n}"
        )
    with rt.db.transaction() as s:
        syncs = s.scalars(
            select(OutboxJob).where(OutboxJob.operation == "sync_stay_fields", OutboxJob.state == "pending")
        ).all()
    # Each wake-up ran (and finished) before the next request in this synchronous test, except that rq
    # jobs only run when we call jobs(): so all six requests found the first sync still pending.
    assert len(syncs) == 1
    jobs()
    assert crm.get_deal(deal).fields["F-BAL"] == "35500.00"


def test_the_pending_sync_is_found_by_one_index_probe_among_done_jobs(
    roles, catalogue, frozen, crm, deal, jobs, rt
):
    from widget_server.ledger.mirror import _PENDING_SYNC

    frozen.set_local("2026-12-01 10:00")
    _admit(roles, catalogue, deal)
    jobs()  # the admission's note and sync are done now
    roles["finance"].post(
        f"/api/v1/deals/{deal}/stay/deposits", json={"amount": "100.00", "method": "cash"}, key="a"
    )
    roles["finance"].post(
        f"/api/v1/deals/{deal}/stay/deposits", json={"amount": "100.00", "method": "cash"}, key="b"
    )
    with rt.db.transaction() as s:
        states = s.execute(
            select(OutboxJob.state, OutboxJob.operation).where(OutboxJob.operation == "sync_stay_fields")
        ).all()
        assert sorted(states) == [("done", "sync_stay_fields"), ("pending", "sync_stay_fields")]
        # Done jobs pile up for ever in a busy portal: the lookup must not walk them.
        sql = str(_PENDING_SYNC.compile(dialect=rt.db.engine.dialect))
        if rt.db.is_sqlite:
            plan = " ".join(str(row[-1]) for row in s.connection().exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql, (1, "sync_stay_fields", deal, 0, 1, 0)))  # fmt: skip
        else:
            s.execute(text("SET LOCAL enable_seqscan = off"))
            params = {"portal_id": 1, "operation_1": "sync_stay_fields", "deal_id": deal, "attempts_1": 0}
            plan = " ".join(row[0] for row in s.connection().exec_driver_sql(
                "EXPLAIN " + sql, {**params, "param_1": 1}))  # fmt: skip
        assert "ix_outbox_jobs_pending_by_deal" in plan


def test_low_balance_task_once_per_crossing(roles, catalogue, frozen, crm, deal, jobs):
    from widget_server.jobs.ledger import run_daily_charges

    frozen.set_local("2026-12-01 10:00")
    _admit(roles, catalogue, deal, amount="17500.00")  # 5 days: paid through 5 Dec, 4 days left
    jobs()
    assert crm.tasks_for(deal) == []
    frozen.set_local("2026-12-02 10:00")
    run_daily_charges(now=frozen.now)
    jobs()
    tasks = crm.tasks_for(deal)
    assert len(tasks) == 1
    assert "оплачено по 05.12.2026" in tasks[0].text  # 3 days left: the threshold
    frozen.set_local("2026-12-03 10:00")
    run_daily_charges(now=frozen.now)
    jobs()
    assert len(crm.tasks_for(deal)) == 1  # still low: no second task
    roles["finance"].post(
        f"/api/v1/deals/{deal}/stay/deposits", json={"amount": "70000.00", "method": "card"}
    )
    jobs()
    roles["finance"].post(
        f"/api/v1/deals/{deal}/stay/charges", json={"amount": "75000.00", "article_id": catalogue["drugs"]}
    )
    jobs()
    assert len(crm.tasks_for(deal)) == 2  # topped up, then crossed again
    # The charge holds its account as a row and writes the flag by a statement: it must have stuck.
    charged = roles["finance"].post(
        f"/api/v1/deals/{deal}/stay/charges", json={"amount": "10.00", "article_id": catalogue["drugs"]}
    )
    assert charged.status_code == 201, charged.get_json()
    jobs()
    assert len(crm.tasks_for(deal)) == 2


def _ledger_notes(rt) -> list[dict]:
    with rt.db.transaction() as s:
        return [
            j.payload
            for j in s.scalars(
                select(OutboxJob)
                .where(OutboxJob.idempotency_key.like("ledger-note:%"))
                .order_by(OutboxJob.id)
            )
        ]


def test_every_entry_kind_is_queued_as_facts_and_worded_as_before(
    roles, catalogue, frozen, crm, deal, jobs, rt, monkeypatch
):
    from widget_server.ledger import notes

    worded: list[str] = []
    real = notes.format_minor
    monkeypatch.setattr(notes, "format_minor", lambda *a: worded.append("x") or real(*a))
    finance, admin = roles["finance"], roles["admin"]
    frozen.set_local("2026-12-01 10:00")
    admitted = finance.post(f"/api/v1/deals/{deal}/stay", json={
        "admission_date": "2026-12-01", "tariff_id": catalogue["standard"],
        "representative": {"name": "Петрова Ольга"},
        "deposit": {"amount": "35000.00", "method": "cash", "payer": "Петрова Ольга"}})  # fmt: skip
    assert admitted.status_code == 201
    charged = finance.post(f"/api/v1/deals/{deal}/stay/charges", json={
        "amount": "1500.00", "article_id": catalogue["dressing"], "reason": "перевязка"})  # fmt: skip
    bought = finance.post(f"/api/v1/deals/{deal}/stay/purchases", json={
        "amount": "800.00", "article_id": catalogue["drugs"], "description": "Бинты"})  # fmt: skip
    assert bought.get_json()["entry"] is not None  # below the threshold: charged at once
    reversed_ = admin.post(
        f"/api/v1/deals/{deal}/stay/entries/{charged.get_json()['entry']['id']}/reversal",
        json={"reason": "не тому пациенту"},
    )
    assert reversed_.status_code == 201
    frozen.set_local("2026-12-03 12:00")
    discharged = finance.post(f"/api/v1/deals/{deal}/stay/discharge", json={
        "discharge_date": "2026-12-03", "refund_method": "transfer"})  # fmt: skip
    assert discharged.status_code == 200, discharged.get_json()

    assert worded == []  # the requests queued facts; no Babel inside the account's write transaction
    payloads = _ledger_notes(rt)
    assert all(set(p) == {"deal_id", "ledger_note"} for p in payloads)
    assert json.loads(json.dumps(payloads)) == payloads  # plain JSON, nothing the job must re-read
    texts = [notes.note_text(p).replace("\xa0", " ") for p in payloads]
    assert texts == [
        "Пополнение 35 000,00 ₽. Способ: наличные. Плательщик: Петрова Ольга. Баланс: 35 000,00 ₽. "
        "Оплачено по 10.12.2026",
        "Списание 1 500,00 ₽ — Перевязочный материал. Основание: перевязка. Баланс: 33 500,00 ₽. "
        "Оплачено по 09.12.2026",
        "Закупка 800,00 ₽ — Дополнительные лекарства. Основание: Бинты. Баланс: 32 700,00 ₽. "
        "Оплачено по 09.12.2026",
        "Сторно записи №2 1 500,00 ₽ — Перевязочный материал. Основание: не тому пациенту. "
        "Баланс: 34 200,00 ₽. Оплачено по 09.12.2026",
        # Written in one transaction: only the last could carry a forecast, and the stay is closed.
        "Ежедневное списание 3 500,00 ₽ за 01.12.2026. Баланс: 30 700,00 ₽",
        "Ежедневное списание 3 500,00 ₽ за 02.12.2026. Баланс: 27 200,00 ₽",
        "Возврат остатка 27 200,00 ₽. Способ: перевод. Основание: возврат остатка при выписке. "
        "Баланс: 0,00 ₽",
    ]
    jobs()
    assert [n.replace("\xa0", " ") for n in crm.notes_for(deal)] == texts  # worded by the job, as sent
    assert worded


def test_what_an_edit_could_change_is_captured_when_the_entry_is_posted(
    roles, catalogue, frozen, clinic, crm, deal, jobs, rt
):
    from widget_server.models import ExpenseArticle

    frozen.set_local("2026-12-01 10:00")
    _admit(roles, catalogue, deal)
    roles["finance"].post(f"/api/v1/deals/{deal}/stay/charges", json={
        "amount": "1500.00", "article_id": catalogue["dressing"], "reason": "перевязка"})  # fmt: skip
    with rt.db.transaction() as s:
        s.get(ExpenseArticle, catalogue["dressing"]).name = "Расходники"
        s.get(Portal, clinic.id).locale = "en_US"
    jobs()
    assert crm.notes_for(deal)[-1].replace("\xa0", " ") == (
        "Списание 1 500,00 ₽ — Перевязочный материал. Основание: перевязка. Баланс: 33 500,00 ₽. "
        "Оплачено по 09.12.2026"
    )


def test_only_the_latest_entry_of_an_open_stay_carries_the_forecast(
    roles, catalogue, frozen, clinic, deal, rt
):
    from widget_server.ledger.mirror import entry_note
    from widget_server.ledger.summary import stay_summary
    from widget_server.models import LedgerEntry, StayAccount

    frozen.set_local("2026-12-01 10:00")
    _admit(roles, catalogue, deal)
    roles["finance"].post(
        f"/api/v1/deals/{deal}/stay/deposits", json={"amount": "7000.00", "method": "card", "payer": "Петров"}
    )
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        account = s.scalar(select(StayAccount).where(StayAccount.deal_id == deal))
        summary = stay_summary(s, portal, account)
        first, second = s.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)).all()
        older = entry_note(s, portal, first, summary, latest=False)
        latest = entry_note(s, portal, second, summary, latest=True)
    assert (older["balance_after_minor"], older["paid_through"]) == (3_500_000, None)
    assert (latest["balance_after_minor"], latest["paid_through"]) == (4_200_000, "2026-12-12")
    assert (latest["method"], latest["payer"], latest["currency"], latest["locale"]) == (
        "card", "Петров", "RUB", "ru_RU"
    )  # fmt: skip


def test_a_stay_the_balance_does_not_limit_is_worded_so():
    from widget_server.ledger.notes import UNLIMITED, word_ledger_note

    facts = {
        "kind": "deposit", "amount_minor": 100_000, "currency": "RUB", "locale": "ru_RU", "article": None,
        "service_date": None, "method": "insurance", "payer": None, "reason": None, "reversed_seq": None,
        "balance_after_minor": 100_000, "paid_through": UNLIMITED,
    }  # fmt: skip
    assert word_ledger_note(facts).replace("\xa0", " ") == (
        "Пополнение 1 000,00 ₽. Способ: страховая. Баланс: 1 000,00 ₽. Срок пребывания не ограничен балансом"
    )
