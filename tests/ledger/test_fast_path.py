"""The charge request's fast path keeps the behaviour of the slow one: the lean summary serialiser gives
exactly what the schema's dump gave, the Idempotency-Key claim lives and dies with the charge's own
transaction, and the rows written outside the ORM's unit of work read back as the objects the request used."""

from __future__ import annotations

from sqlalchemy import event, func, select, update

import widget_server.http.api_stay as api_stay
from widget_server.db import READ_ONLY
from widget_server.http.schemas_ledger import StaySummarySchema
from widget_server.jobs.ledger import run_daily_charges
from widget_server.ledger.notes import note_text
from widget_server.models import ApiKey, IdempotencyRecord, LedgerEntry, OutboxJob, PurchaseRequest


def _count(rt, model) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def _admit(roles, catalogue, deal: str = "700") -> None:  # type: ignore[no-untyped-def]
    response = roles["finance"].post(f"/api/v1/deals/{deal}/stay", json={
        "admission_date": "2026-11-27", "tariff_id": catalogue["standard"],
        "representative": {"name": "Петрова Ольга", "phone": "+7 912 345-67-89"},
        "deposit": {"amount": "20000.00", "method": "card"}})  # fmt: skip
    assert response.status_code == 201, response.get_json()


def test_lean_summary_is_exactly_the_schemas_dump(roles, catalogue, frozen, monkeypatch):
    seen: list[dict] = []
    lean, iso = api_stay.summary_document, api_stay._iso

    def checked(portal, summary):  # type: ignore[no-untyped-def]
        result = lean(portal, summary)
        # The same document with its dates and datetimes left as objects is what the schema dumps (built
        # afresh: the recent entries' documents are kept between requests, with their dates as text).
        monkeypatch.setattr(api_stay, "_iso", lambda value: value)
        api_stay._stored_entry_document.cache_clear()
        try:
            typed = lean(portal, summary)
        finally:
            monkeypatch.setattr(api_stay, "_iso", iso)
            api_stay._stored_entry_document.cache_clear()
        assert result == StaySummarySchema().dump(typed)
        seen.append(result)
        return result

    monkeypatch.setattr(api_stay, "summary_document", checked)
    _admit(roles, catalogue)
    frozen.set_local("2026-11-29 10:00")
    run_daily_charges(now=frozen.now)  # daily entries carry a service date
    finance, admin, staff = roles["finance"], roles["admin"], roles["staff"]
    dressing = {"amount": "150.50", "article_id": catalogue["dressing"], "reason": "перевязка"}
    charged = finance.post("/api/v1/deals/700/stay/charges", key="c1", json=dressing)
    held = finance.post("/api/v1/deals/700/stay/purchases", key="p1",
                        json={"amount": "6000.00", "description": "Коляска"})  # fmt: skip
    assert charged.status_code == held.status_code == 201
    assert held.get_json()["stay"]["pending_purchases"], "a hold above the threshold"
    entry_id = charged.get_json()["entry"]["id"]
    assert admin.post(f"/api/v1/deals/700/stay/entries/{entry_id}/reversal", key="r1",
                      json={"reason": "ошибка"}).status_code == 201  # fmt: skip
    for api in (finance, staff):
        assert api.get("/api/v1/deals/700/stay").status_code == 200
    frozen.set_local("2026-11-30 10:00")
    discharge = {"discharge_date": "2026-11-30", "refund_method": "cash"}
    assert finance.post("/api/v1/deals/700/stay/discharge", key="d1", json=discharge).status_code == 200

    kinds = {e["kind"] for d in seen for e in d.get("recent_entries") or []}
    assert {"deposit", "daily_charge", "charge", "reversal", "refund"} <= kinds
    assert any(d.get("pending_purchases") for d in seen) and any(not d["money_visible"] for d in seen)
    assert any(d["status"] == "closed" for d in seen)


def test_the_summary_from_the_posted_entrys_state_is_the_one_read_afresh(roles, catalogue, frozen):
    # A response's summary starts from what post_entry read under the lock plus the entry itself; a GET
    # reads the account again. With a hold pending, daily charges behind and a reversal, they must agree.
    _admit(roles, catalogue)
    frozen.set_local("2026-11-29 10:00")
    run_daily_charges(now=frozen.now)
    finance, admin = roles["finance"], roles["admin"]
    assert finance.post("/api/v1/deals/700/stay/purchases", key="p",
                        json={"amount": "6000.00", "description": "Коляска"}).status_code == 201  # fmt: skip
    dressing = {"amount": "150.50", "article_id": catalogue["dressing"]}
    responses = [
        finance.post("/api/v1/deals/700/stay/charges", key="c", json=dressing),
        finance.post("/api/v1/deals/700/stay/deposits", key="d", json={"amount": "99.99", "method": "cash"}),
    ]
    entry_id = responses[0].get_json()["entry"]["id"]
    responses.append(admin.post(f"/api/v1/deals/700/stay/entries/{entry_id}/reversal", key="r",
                                json={"reason": "ошибка"}))  # fmt: skip
    for response in responses:
        assert response.status_code == 201, response.get_json()
    after = finance.get("/api/v1/deals/700/stay").get_json()
    assert responses[-1].get_json()["stay"] == after
    assert after["holds"] == "6000.00" and after["forecast"]["paid_through"] is not None
    assert responses[0].get_json()["stay"]["balance"] == "9349.50"  # 20 000 − 3 × 3 500 − 150.50


def test_a_posted_entry_and_purchase_carry_iso_dates_like_the_summary(roles, catalogue, frozen):
    _admit(roles, catalogue)
    finance = roles["finance"]
    one = {"amount": "1.00", "article_id": catalogue["dressing"]}
    charged = finance.post("/api/v1/deals/700/stay/charges", key="c", json=one).get_json()
    assert charged["entry"] == charged["stay"]["recent_entries"][0]
    assert charged["entry"]["entry_date"] == "2026-11-28"
    held = finance.post("/api/v1/deals/700/stay/purchases", key="p",
                        json={"amount": "6000.00", "description": "Коляска"}).get_json()  # fmt: skip
    assert held["purchase"] == held["stay"]["pending_purchases"][0]
    assert held["purchase"]["requested_at"].startswith("2026-11-28T")


def test_a_charge_failing_midway_leaves_no_entry_and_no_claim(roles, catalogue, frozen, rt, app, monkeypatch):
    _admit(roles, catalogue)
    before = (_count(rt, LedgerEntry), _count(rt, IdempotencyRecord), _count(rt, OutboxJob))

    def broken(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the mirror fell over after the entry was written")

    monkeypatch.setattr(api_stay, "mirror_entries", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    body = {"amount": "100.00", "article_id": catalogue["dressing"]}
    assert roles["finance"].post("/api/v1/deals/700/stay/charges", key="k", json=body).status_code == 500
    assert (_count(rt, LedgerEntry), _count(rt, IdempotencyRecord), _count(rt, OutboxJob)) == before

    monkeypatch.undo()
    again = roles["finance"].post("/api/v1/deals/700/stay/charges", key="k", json=body)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert _count(rt, LedgerEntry) == before[0] + 1


def test_a_refused_charge_records_its_refusal_and_nothing_else(roles, catalogue, frozen, rt):
    _admit(roles, catalogue)
    before = (_count(rt, LedgerEntry), _count(rt, OutboxJob))
    body = {"amount": "999999.00", "article_id": catalogue["dressing"]}
    first = roles["finance"].post("/api/v1/deals/700/stay/charges", key="too-much", json=body)
    again = roles["finance"].post("/api/v1/deals/700/stay/charges", key="too-much", json=body)
    assert first.status_code == again.status_code == 422
    assert first.get_json()["error"]["code"] == "insufficient_funds"
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json() == first.get_json()
    assert (_count(rt, LedgerEntry), _count(rt, OutboxJob)) == before
    with rt.db.transaction() as s:
        record = s.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == "too-much"))
        assert (record.state, record.response_status) == ("completed", 422)


def test_a_charge_is_one_write_transaction(roles, catalogue, frozen, rt):
    _admit(roles, catalogue)
    body = {"amount": "10.00", "article_id": catalogue["dressing"]}
    roles["finance"].post("/api/v1/deals/700/stay/charges", key="warm", json=body)  # key's last_used_at
    commits: list[bool] = []

    def count(connection) -> None:  # type: ignore[no-untyped-def]
        commits.append(bool(connection.get_execution_options().get(READ_ONLY)))

    event.listen(rt.db.engine, "commit", count)
    try:
        response = roles["finance"].post("/api/v1/deals/700/stay/charges", key="one", json=body)
    finally:
        event.remove(rt.db.engine, "commit", count)
    assert response.status_code == 201
    # Claim, entry, outbox job and stored response in one write transaction. Authentication joins it on
    # PostgreSQL; on SQLite the key is one lone SELECT before it (no transaction, no write lock held).
    assert commits == [False]


def test_a_charge_records_its_keys_last_use_and_a_refused_one_leaves_the_database_free(
    roles, catalogue, frozen, rt
):
    _admit(roles, catalogue)
    with rt.db.transaction() as s:
        s.execute(update(ApiKey).values(last_used_at=None))
    body = {"amount": "10.00", "article_id": catalogue["dressing"]}
    assert roles["finance"].post("/api/v1/deals/700/stay/charges", key="used", json=body).status_code == 201
    with rt.db.transaction() as s:
        assert None not in s.scalars(select(ApiKey.last_used_at).where(ApiKey.role == "finance")).all()
    records = _count(rt, IdempotencyRecord)
    # Authenticated inside the charge's transaction: a role refusal must end it, or the next writer waits.
    assert roles["staff"].post("/api/v1/deals/700/stay/charges", key="no", json=body).status_code == 403
    with rt.db.transaction() as s:
        s.execute(update(ApiKey).values(last_used_at=None))
    assert _count(rt, IdempotencyRecord) == records


def test_rows_written_by_core_statements_read_back_as_the_request_saw_them(roles, catalogue, frozen, rt):
    _admit(roles, catalogue)
    body = {"amount": "10.00", "article_id": catalogue["dressing"]}
    response = roles["finance"].post("/api/v1/deals/700/stay/charges", key="c", json=body)
    body = response.get_json()
    with rt.db.transaction() as s:
        entry = s.get(LedgerEntry, body["entry"]["id"])
        assert entry is not None and entry.kind == "charge" and entry.amount_minor == 1000
        assert body["stay"]["recent_entries"][0]["created_at"] == entry.created_at.isoformat()
        note = s.scalar(select(OutboxJob).where(OutboxJob.idempotency_key == f"ledger-note:{entry.id}"))
        assert note is not None
        assert (note.state, note.attempts, note.max_attempts, note.lease_until) == ("pending", 0, 12, None)
        assert note_text(note.payload).startswith("Списание 10,00\xa0₽ — Перевязочный материал")
        assert s.scalar(select(func.count()).select_from(PurchaseRequest)) == 0


def test_a_charge_builds_no_orm_portal(roles, catalogue, frozen, monkeypatch):
    # The charge works on the portal's columns read with the API key: loading the ORM Portal (a query and
    # an object per request) is left to the views that need it.
    import widget_server.http.auth as auth

    _admit(roles, catalogue)

    def refused():  # type: ignore[no-untyped-def]
        raise AssertionError("the charge path loaded the ORM Portal")

    monkeypatch.setattr(auth, "current_portal", refused)
    dressing = {"amount": "150.50", "article_id": catalogue["dressing"], "reason": "перевязка"}
    charged = roles["finance"].post("/api/v1/deals/700/stay/charges", key="c-no-orm", json=dressing)
    assert charged.status_code == 201, charged.get_json()
    assert charged.get_json()["stay"]["balance"] == "19849.50"


def test_a_charge_body_is_validated_before_its_transaction_and_a_bad_one_is_still_remembered(
    roles, catalogue, frozen, rt, monkeypatch
):
    _admit(roles, catalogue)
    schema = api_stay._CHARGE
    seen: list[bool] = []
    load = type(schema).load

    def watched(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        from widget_server.http.lifecycle import db_session

        seen.append(db_session().in_transaction())
        return load(self, *args, **kwargs)

    monkeypatch.setattr(type(schema), "load", watched)
    body = {"amount": "10.00", "article_id": catalogue["dressing"]}
    assert roles["finance"].post("/api/v1/deals/700/stay/charges", key="ok", json=body).status_code == 201
    # Once, and (on SQLite, whose authentication reads apart) before the write transaction began.
    assert seen == [not rt.db.is_sqlite]

    seen.clear()
    entries = _count(rt, LedgerEntry)
    bad = {"amount": 10, "article_id": catalogue["dressing"]}
    first = roles["finance"].post("/api/v1/deals/700/stay/charges", key="bad", json=bad)
    again = roles["finance"].post("/api/v1/deals/700/stay/charges", key="bad", json=bad)
    assert first.status_code == again.status_code == 422
    assert "amount" in first.get_json()["error"]["fields"]
    assert again.headers["Idempotent-Replayed"] == "true"  # the refusal went through the mutation as before
    assert _count(rt, LedgerEntry) == entries


def test_recent_entry_documents_are_kept_by_the_whole_row_and_handed_out_as_copies() -> None:
    from collections import namedtuple
    from datetime import UTC, date, datetime

    from widget_server.ledger.summary import _RECENT_COLUMNS

    row_type = namedtuple("Row", _RECENT_COLUMNS)  # type: ignore[misc]
    values = dict.fromkeys(_RECENT_COLUMNS)
    values.update(id=41, seq=3, kind="charge", sign=-1, amount_minor=15050, currency="RUB",
                  entry_date=date(2026, 11, 29), actor="apikey:1", source="api",
                  created_at=datetime(2026, 11, 29, 7, 0, tzinfo=UTC))  # fmt: skip
    row = row_type(**values)
    first = api_stay._recent_entry_document(row)
    assert first == api_stay.entry_document(row)
    first["amount"] = "tampered"  # a caller's change stays in its own copy
    assert api_stay._recent_entry_document(row)["amount"] == "150.50"
    # SQLite may hand a rolled-back entry's id out again: the same id with other values is another document.
    other = row._replace(amount_minor=99, reason="другая")
    assert api_stay._recent_entry_document(other)["amount"] == "0.99"
    assert api_stay._recent_entry_document(other)["reason"] == "другая"
    kept = api_stay._stored_entry_document.cache_info().currsize
    orm_like = type("Entry", (), {**values, "amount_minor": 1})()  # not a row: built afresh, never kept
    assert api_stay._recent_entry_document(orm_like)["amount"] == "0.01"
    assert api_stay._stored_entry_document.cache_info().currsize == kept
