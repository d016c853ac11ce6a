"""The stay API's contract: amounts, roles, refusals that change nothing, forecasts and purchases."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from widget_server.models import LedgerEntry, Portal, PurchaseRequest


@pytest.fixture
def admitted(roles, catalogue, frozen):
    frozen.set_local("2026-12-01 10:00")
    response = roles["finance"].post("/api/v1/deals/700/stay", json={
        "admission_date": "2026-12-01", "tariff_id": catalogue["standard"],
        "deposit": {"amount": "35000.00", "method": "transfer", "payer": "ООО «Родня»"},
    })  # fmt: skip
    assert response.status_code == 201, response.get_json()
    return "700"


def _entries(rt) -> int:
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(LedgerEntry))


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (1500, 'must be a decimal string like "1500.00", not a JSON number'),
        (1500.5, 'must be a decimal string like "1500.00", not a JSON number'),
        ("15.005", 'not a decimal amount with at most 2 decimals, e.g. "1500.00"'),
        ("0.00", "must be greater than zero"),
        ("-10.00", "must be greater than zero"),
        ("1e3", 'not a decimal amount with at most 2 decimals, e.g. "1500.00"'),
        ("12 000", 'not a decimal amount with at most 2 decimals, e.g. "1500.00"'),
        ("99999999999999999", 'not a decimal amount with at most 2 decimals, e.g. "1500.00"'),
    ],
)
def test_bad_amounts_are_422_naming_the_field_and_change_nothing(roles, admitted, rt, amount, reason):
    before = _entries(rt)
    response = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/deposits", json={"amount": amount, "method": "cash"}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"amount": [reason]}
    assert _entries(rt) == before


def test_absurd_but_well_formed_amount_is_refused(roles, admitted, rt):
    response = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/deposits", json={"amount": "9999999999999999.00", "method": "cash"}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"amount": ["is unrealistically large"]}


def test_staff_sees_dates_but_no_money(roles, admitted):
    staff_view = roles["staff"].get(f"/api/v1/deals/{admitted}/stay").get_json()
    assert staff_view["money_visible"] is False
    assert staff_view["forecast"]["paid_through"] == "2026-12-10"  # 35 000 / 3 500 = 10 days from 1 Dec
    for money_field in ("balance", "holds", "available", "daily_rate", "recent_entries", "pending_purchases"):
        assert staff_view.get(money_field) is None
    finance_view = roles["finance"].get(f"/api/v1/deals/{admitted}/stay").get_json()
    assert finance_view["balance"] == "35000.00" and finance_view["money_visible"] is True
    assert finance_view["balance_display"] == "35\xa0000,00\xa0₽"
    assert roles["staff"].get(f"/api/v1/deals/{admitted}/stay/statement").status_code == 403
    assert roles["viewer"].get(f"/api/v1/deals/{admitted}/stay").status_code == 403


def test_staff_cannot_move_money(roles, admitted, catalogue, rt):
    before = _entries(rt)
    staff = roles["staff"]
    assert staff.post(f"/api/v1/deals/{admitted}/stay/deposits", json={"amount": "1.00", "method": "cash"}
                      ).status_code == 403  # fmt: skip
    assert (
        staff.post(
            f"/api/v1/deals/{admitted}/stay/charges",
            json={"amount": "1.00", "article_id": catalogue["dressing"]},
        ).status_code
        == 403
    )
    assert _entries(rt) == before


def test_unknown_deal_and_foreign_article_are_named(roles, admitted, catalogue, make_portal, make_api):
    assert roles["finance"].get("/api/v1/deals/999/stay").status_code == 404
    other = make_api(make_portal(slug="other-clinic"), "admin")
    foreign = other.post("/api/v1/articles", json={"name": "Чужая статья"}).get_json()["id"]
    response = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/charges", json={"amount": "100.00", "article_id": foreign}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {
        "article_id": [f"no expense article {foreign} in this portal"]
    }
    # and the other portal cannot see this stay at all
    assert other.get(f"/api/v1/deals/{admitted}/stay").status_code == 404


def test_second_admission_of_the_same_deal_is_409(roles, admitted, catalogue):
    response = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay",
        json={"admission_date": "2026-12-01", "tariff_id": catalogue["standard"]},
    )
    assert response.status_code == 409
    assert "deal_id" in response.get_json()["error"]["fields"]


def test_charge_beyond_balance_is_refused_unless_an_admin_overrides(roles, admitted, catalogue, rt):
    body = {"amount": "40000.00", "article_id": catalogue["drugs"], "reason": "дорогой курс"}
    refused = roles["finance"].post(f"/api/v1/deals/{admitted}/stay/charges", json=body)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "insufficient_funds"
    assert _entries(rt) == 1
    not_admin = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/charges", json={**body, "override": True}
    )
    assert not_admin.status_code == 403
    allowed = roles["admin"].post(f"/api/v1/deals/{admitted}/stay/charges", json={**body, "override": True})
    assert allowed.status_code == 201
    stay = allowed.get_json()["stay"]
    assert stay["balance"] == "-5000.00"
    assert stay["forecast"]["days_of_debt"] == 2  # 5 000 at 3 500 a day, rounded up
    assert stay["low_balance"] is True


def test_overdraft_setting_allows_a_margin(roles, admitted, catalogue, rt, clinic):
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        portal.settings = {
            **portal.settings,
            "ledger": {**portal.settings["ledger"], "overdraft_minor": 1_000_000},
        }
    response = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/charges",
        json={"amount": "40000.00", "article_id": catalogue["drugs"]},
    )
    assert response.status_code == 201


def test_daily_charges_may_go_into_debt(roles, admitted, frozen, rt):
    from widget_server.jobs.ledger import run_daily_charges

    frozen.set_local("2026-12-12 08:00")  # 12 days at 3 500 against 35 000
    run_daily_charges(now=frozen.now)
    stay = roles["finance"].get(f"/api/v1/deals/{admitted}/stay").get_json()
    assert stay["balance"] == "-7000.00"
    assert stay["forecast"]["days_of_debt"] == 2
    assert stay["forecast"]["paid_through"] == "2026-12-10"


def test_forecast_what_if_purchase_and_tariff(roles, admitted, catalogue):
    base = roles["staff"].get(f"/api/v1/deals/{admitted}/stay/forecast").get_json()
    assert base["forecast"]["paid_through"] == "2026-12-10"
    with_purchase = roles["staff"].get(f"/api/v1/deals/{admitted}/stay/forecast?purchase=7000.00").get_json()
    assert with_purchase["forecast"]["paid_through"] == "2026-12-08"
    comfort = (
        roles["staff"]
        .get(
            f"/api/v1/deals/{admitted}/stay/forecast?tariff_id={catalogue['comfort']}&tariff_from=2026-12-01"
        )
        .get_json()
    )
    assert comfort["forecast"]["paid_through"] == "2026-12-07"  # 35 000 / 5 000 = 7 days
    bad = roles["staff"].get(f"/api/v1/deals/{admitted}/stay/forecast?purchase=abc")
    assert bad.status_code == 422 and "purchase" in bad.get_json()["error"]["fields"]


def test_tariff_change_from_a_date_reprices_the_forecast_not_the_past(roles, admitted, catalogue, frozen, rt):
    from widget_server.jobs.ledger import run_daily_charges

    frozen.set_local("2026-12-03 09:00")
    run_daily_charges(now=frozen.now)  # 1-3 Dec charged at 3 500
    too_early = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/tariff",
        json={"tariff_id": catalogue["comfort"], "effective_from": "2026-12-02"},
    )
    assert too_early.status_code == 422
    assert "effective_from" in too_early.get_json()["error"]["fields"]
    changed = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/tariff",
        json={"tariff_id": catalogue["comfort"], "effective_from": "2026-12-05"},
    )
    assert changed.status_code == 200
    # 24 500 left: 4 Dec at 3 500 (21 000 left), then 4 days at 5 000 → paid through 8 Dec.
    assert changed.get_json()["forecast"]["paid_through"] == "2026-12-08"
    frozen.set_local("2026-12-06 09:00")
    run_daily_charges(now=frozen.now)
    with rt.db.transaction() as s:
        amounts = s.execute(
            select(LedgerEntry.service_date, LedgerEntry.amount_minor)
            .where(LedgerEntry.kind == "daily_charge")
            .order_by(LedgerEntry.seq)
        ).all()
    assert [(d.day, a) for d, a in amounts] == [
        (1, 350000),
        (2, 350000),
        (3, 350000),
        (4, 350000),
        (5, 500000),
        (6, 500000),
    ]


def test_small_purchase_is_charged_at_once(roles, admitted, catalogue):
    response = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/purchases",
        json={"amount": "900.00", "article_id": catalogue["drugs"], "description": "Мазь"},
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["purchase"] is None and body["entry"]["kind"] == "purchase"
    assert body["stay"]["balance"] == "34100.00"


def test_rejected_and_expired_purchases_release_their_hold(roles, admitted, catalogue, frozen, rt):
    from widget_server.jobs.ledger import run_expire_holds

    finance = roles["finance"]
    first = finance.post(
        f"/api/v1/deals/{admitted}/stay/purchases", json={"amount": "10000.00", "description": "Ортез"}
    ).get_json()
    assert first["stay"]["available"] == "25000.00"
    rejected = finance.post(
        f"/api/v1/deals/{admitted}/stay/purchases/{first['purchase']['id']}/reject",
        json={"note": "дочь против"},
    )
    assert rejected.status_code == 200
    assert rejected.get_json()["stay"]["available"] == "35000.00"
    again = finance.post(
        f"/api/v1/deals/{admitted}/stay/purchases/{first['purchase']['id']}/approve",
        json={"consent": {"given_by": "Дочь", "channel": "phone", "given_at": "2026-12-01T09:00:00+03:00"}},
    )
    assert again.status_code == 409

    second = finance.post(
        f"/api/v1/deals/{admitted}/stay/purchases", json={"amount": "20000.00", "description": "Кресло"}
    ).get_json()
    assert second["stay"]["available"] == "15000.00"
    frozen.set_local("2026-12-05 10:00")  # past the 72 h hold
    assert run_expire_holds() == "expired 1"
    with rt.db.transaction() as s:
        assert s.get(PurchaseRequest, second["purchase"]["id"]).status == "expired"
    assert finance.get(f"/api/v1/deals/{admitted}/stay").get_json()["holds"] == "0.00"


def test_hold_counts_against_one_off_charges(roles, admitted, catalogue):
    finance = roles["finance"]
    finance.post(
        f"/api/v1/deals/{admitted}/stay/purchases", json={"amount": "30000.00", "description": "Кровать"}
    )
    response = finance.post(
        f"/api/v1/deals/{admitted}/stay/charges", json={"amount": "6000.00", "article_id": catalogue["drugs"]}
    )
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "insufficient_funds"


def test_consent_needs_a_known_channel_and_aware_time(roles, admitted):
    finance = roles["finance"]
    purchase = finance.post(
        f"/api/v1/deals/{admitted}/stay/purchases", json={"amount": "10000.00", "description": "Ортез"}
    ).get_json()["purchase"]
    response = finance.post(
        f"/api/v1/deals/{admitted}/stay/purchases/{purchase['id']}/approve",
        json={"consent": {"given_by": "Дочь", "channel": "telepathy", "given_at": "2026-12-01T09:00:00"}},
    )
    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"consent.channel", "consent.given_at"}


def test_statement_csv_opens_in_russian_excel(roles, admitted):
    response = roles["finance"].get(f"/api/v1/deals/{admitted}/stay/statement.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff№;Дата;Операция;Описание;Приход;Расход;Остаток;Кто")
    assert "Пополнение;плательщик: ООО «Родня»;35000,00;;35000,00" in text


def test_statement_kind_filter_keeps_the_running_balance(roles, admitted, frozen):
    from widget_server.jobs.ledger import run_daily_charges

    frozen.set_local("2026-12-02 09:00")
    run_daily_charges(now=frozen.now)
    rows = (
        roles["finance"].get(f"/api/v1/deals/{admitted}/stay/statement?kind=daily_charge").get_json()["rows"]
    )
    assert [r["balance"] for r in rows] == ["31500.00", "28000.00"]
    bad = roles["finance"].get(f"/api/v1/deals/{admitted}/stay/statement?kind=bribe")
    assert bad.status_code == 422


def test_catalogue_writes_are_admin_only_and_rates_hidden_from_staff(roles, catalogue):
    assert (
        roles["finance"].post("/api/v1/tariffs", json={"name": "VIP", "daily_rate": "9000.00"}).status_code
        == 403
    )
    tariffs = roles["staff"].get("/api/v1/tariffs").get_json()
    assert {t["name"] for t in tariffs} == {"Стандарт", "Комфорт"}
    assert all("daily_rate" not in t for t in tariffs)
    assert {t["daily_rate"] for t in roles["finance"].get("/api/v1/tariffs").get_json()} == {
        "3500.00",
        "5000.00",
    }
    duplicate = roles["admin"].post("/api/v1/tariffs", json={"name": "Стандарт", "daily_rate": "1.00"})
    assert duplicate.status_code == 409


def test_idempotent_charge_replay_returns_the_first_response(roles, admitted, catalogue, rt):
    body = {"amount": "500.00", "article_id": catalogue["dressing"]}
    first = roles["finance"].post(f"/api/v1/deals/{admitted}/stay/charges", json=body, key="tap-1")
    second = roles["finance"].post(f"/api/v1/deals/{admitted}/stay/charges", json=body, key="tap-1")
    assert first.get_json() == second.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _entries(rt) == 2  # the opening deposit and one charge


def test_statement_pdf_is_served_to_finance_only(roles, admitted):
    response = roles["finance"].get(f"/api/v1/deals/{admitted}/stay/statement.pdf")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert "statement-deal-700.pdf" in response.headers["Content-Disposition"]
    assert roles["staff"].get(f"/api/v1/deals/{admitted}/stay/statement.pdf").status_code == 403


def test_a_charge_to_a_missing_or_archived_article_is_refused_and_writes_nothing(
    roles, admitted, catalogue, rt
):
    from widget_server.models import ExpenseArticle

    before = _entries(rt)
    missing = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/charges", json={"amount": "100.00", "article_id": 987654}
    )
    assert missing.status_code == 422
    assert missing.get_json()["error"]["fields"] == {
        "article_id": ["no expense article 987654 in this portal"]
    }
    with rt.db.transaction() as s:
        s.get(ExpenseArticle, catalogue["dressing"]).active = False
    archived = roles["finance"].post(
        f"/api/v1/deals/{admitted}/stay/charges",
        json={"amount": "100.00", "article_id": catalogue["dressing"]},
    )
    assert archived.status_code == 422
    assert "archived" in archived.get_json()["error"]["fields"]["article_id"][0]
    assert _entries(rt) == before
