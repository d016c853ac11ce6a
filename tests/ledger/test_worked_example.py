"""Seed 000 told as a story with numbers, step by step through the API (hordak's worked-example style).

A patient of a rehabilitation hospital is admitted on 28 Nov with a 50 000 ₽ deposit at 3 500 ₽ a day;
the month turns; a dressing is charged; a purchase is approved by the daughter; a wrong charge is
reversed by an admin (not by a nurse); the patient is discharged on 5 Dec and the rest refunded.
"""

from __future__ import annotations

from sqlalchemy import select

from widget_server.jobs.ledger import run_daily_charges
from widget_server.ledger import verify_chains
from widget_server.ledger.notes import note_text
from widget_server.models import LedgerEntry, OutboxJob


def stay(api, deal="501"):
    return api.get(f"/api/v1/deals/{deal}/stay").get_json()


def test_seed_000_stay_from_admission_to_discharge(rt, roles, catalogue, frozen, jobs):
    staff, finance, admin = roles["staff"], roles["finance"], roles["admin"]

    # 28 Nov: admission with an opening deposit from the daughter.
    frozen.set_local("2026-11-28 11:00")
    admitted = finance.post("/api/v1/deals/501/stay", key="admit-501", json={
        "admission_date": "2026-11-28", "tariff_id": catalogue["standard"],
        "representative": {"name": "Иванова Мария (дочь)", "phone": "8 (916) 123-45-67"},
        "deposit": {"amount": "50000.00", "method": "cash", "payer": "Иванова Мария"},
    })  # fmt: skip
    assert admitted.status_code == 201, admitted.get_json()
    body = admitted.get_json()
    assert body["balance"] == "50000.00"
    assert body["representative"] == {"name": "Иванова Мария (дочь)", "phone": "+79161234567"}
    # Nothing charged yet: 50 000 covers 14 days from 28 Nov (49 000), the 15th only partly.
    assert body["forecast"]["paid_through"] == "2026-12-11"

    # 2 Dec: the daily job (which did not run for four days) catches up across the month boundary.
    frozen.set_local("2026-12-02 10:00")
    run_daily_charges(now=frozen.now)
    run_daily_charges(now=frozen.now)  # a second run changes nothing
    summary = stay(finance)
    assert summary["balance"] == "32500.00"  # 5 days × 3 500
    with rt.db.transaction() as s:
        days = s.scalars(select(LedgerEntry.service_date).where(LedgerEntry.kind == "daily_charge")).all()
    assert [d.isoformat() for d in days] == [
        "2026-11-28",
        "2026-11-29",
        "2026-11-30",
        "2026-12-01",
        "2026-12-02",
    ]
    assert summary["forecast"]["paid_through"] == "2026-12-11"  # 32 500 → 9 more days from 3 Dec
    assert summary["forecast"]["days_left"] == 9

    # A one-off dressing charge moves the paid-through date by a day.
    dressing = finance.post(
        "/api/v1/deals/501/stay/charges",
        key="dressing-1",
        json={"amount": "1500.00", "article_id": catalogue["dressing"], "reason": "перевязка после осмотра"},
    )
    assert dressing.status_code == 201
    assert dressing.get_json()["stay"]["balance"] == "31000.00"
    assert dressing.get_json()["stay"]["forecast"]["paid_through"] == "2026-12-10"

    # A 12 000 ₽ purchase needs the daughter's consent: first a hold...
    requested = finance.post(
        "/api/v1/deals/501/stay/purchases",
        key="buy-1",
        json={
            "amount": "12000.00",
            "article_id": catalogue["drugs"],
            "description": "Курс препарата по назначению",
        },
    )
    assert requested.status_code == 201
    purchase = requested.get_json()["purchase"]
    assert purchase["status"] == "pending" and requested.get_json()["entry"] is None
    held = requested.get_json()["stay"]
    assert (held["balance"], held["holds"], held["available"]) == ("31000.00", "12000.00", "19000.00")
    assert held["forecast"]["paid_through"] == "2026-12-07"
    # ... then the consent turns the hold into a purchase entry.
    approved = finance.post(
        f"/api/v1/deals/501/stay/purchases/{purchase['id']}/approve",
        key="buy-1-ok",
        json={
            "consent": {
                "given_by": "Иванова Мария",
                "channel": "phone",
                "given_at": "2026-12-02T09:30:00+03:00",
            }
        },
    )
    assert approved.status_code == 201, approved.get_json()
    assert approved.get_json()["purchase"]["consent_by"] == "Иванова Мария"
    after_purchase = approved.get_json()["stay"]
    assert (after_purchase["balance"], after_purchase["holds"]) == ("19000.00", "0.00")
    assert after_purchase["forecast"]["paid_through"] == "2026-12-07"

    # A wrong charge; the nurse may not reverse it, the admin may, once.
    wrong = finance.post(
        "/api/v1/deals/501/stay/charges",
        key="wrong-1",
        json={"amount": "2000.00", "article_id": catalogue["drugs"], "reason": "ошибочно"},
    ).get_json()
    assert wrong["stay"]["balance"] == "17000.00"
    wrong_id = wrong["entry"]["id"]
    refused = staff.post(f"/api/v1/deals/501/stay/entries/{wrong_id}/reversal", json={"reason": "ошибка"})
    assert refused.status_code == 403
    reversed_ = admin.post(
        f"/api/v1/deals/501/stay/entries/{wrong_id}/reversal",
        key="rev-1",
        json={"reason": "списано не тому пациенту"},
    )
    assert reversed_.status_code == 201
    assert reversed_.get_json()["stay"]["balance"] == "19000.00"
    again = admin.post(f"/api/v1/deals/501/stay/entries/{wrong_id}/reversal", json={"reason": "ещё раз"})
    assert again.status_code == 409
    assert again.get_json()["error"]["fields"]["entry_id"][0].startswith(
        f"entry {wrong_id} was already reversed"
    )

    # 5 Dec: discharge. 3 and 4 Dec are charged, the discharge day is not; the rest is refunded.
    frozen.set_local("2026-12-05 16:00")
    discharged = finance.post(
        "/api/v1/deals/501/stay/discharge",
        key="out-1",
        json={"discharge_date": "2026-12-05", "refund_method": "card"},
    )
    assert discharged.status_code == 200, discharged.get_json()
    final = discharged.get_json()
    assert (final["status"], final["balance"], final["discharge_date"]) == ("closed", "0.00", "2026-12-05")
    statement = finance.get("/api/v1/deals/501/stay/statement").get_json()["rows"]
    assert [(r["kind"], r["credit"], r["debit"]) for r in statement[-3:]] == [
        ("daily_charge", "0.00", "3500.00"),
        ("daily_charge", "0.00", "3500.00"),
        ("refund", "0.00", "12000.00"),
    ]
    assert statement[-1]["balance"] == "0.00"

    # After discharge only an admin reversal is possible.
    late = finance.post("/api/v1/deals/501/stay/deposits", json={"amount": "100.00", "method": "cash"})
    assert late.status_code == 409

    # The story left an intact hash chain and notes for the deal's feed.
    with rt.db.transaction() as s:
        checked, breaks = verify_chains(s)
        notes = [
            note_text(j.payload).replace("\xa0", " ")
            for j in s.scalars(select(OutboxJob).where(OutboxJob.operation == "add_note"))
        ]
    assert breaks == [] and checked == len(statement)
    assert any(
        n.startswith(
            "Списание 1 500,00 ₽ — Перевязочный материал. Основание: перевязка после осмотра. "
            "Баланс: 31 000,00 ₽. Оплачено по 10.12.2026"
        )
        for n in notes
    ), notes
    assert "Ежедневное списание 3 500,00 ₽ за 04.12.2026. Баланс: 12 000,00 ₽" in notes
    assert (
        "Возврат остатка 12 000,00 ₽. Способ: карта. Основание: возврат остатка при выписке. Баланс: 0,00 ₽"
        in notes
    )
