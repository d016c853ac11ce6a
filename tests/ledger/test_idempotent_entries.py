"""Idempotency-Key on the ledger's own endpoints (`local_mutation`): on SQLite the key is only looked up
when the write transaction starts and its record is inserted once, complete, at the end — the write lock
keeps the key ours meanwhile. The guarantees are the same as everywhere: one entry per key, the first
response replayed, another body refused, an abandoned claim taken over, a crash leaves nothing."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import event, func, select

from tests.support.failures import fail_first_call
from widget_server.models import IdempotencyRecord, LedgerEntry, utcnow

CHARGES = "/api/v1/deals/700/stay/charges"


def _admit(roles, catalogue) -> None:  # type: ignore[no-untyped-def]
    response = roles["finance"].post("/api/v1/deals/700/stay", json={
        "admission_date": "2026-11-27", "tariff_id": catalogue["standard"],
        "deposit": {"amount": "20000.00", "method": "card"}})  # fmt: skip
    assert response.status_code == 201, response.get_json()


def _count(rt, model) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_a_keyed_charge_writes_its_record_once_and_replays_it(roles, catalogue, frozen, rt) -> None:  # type: ignore[no-untyped-def]
    _admit(roles, catalogue)
    body = {"amount": "10.00", "article_id": catalogue["dressing"]}
    touching: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "idempotency_records" in statement:
            touching.append(statement.split()[0])

    event.listen(rt.db.engine, "before_cursor_execute", record)
    try:
        first = roles["finance"].post(CHARGES, key="once", json=body)
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", record)
    assert first.status_code == 201
    # SQLite: looked up, then inserted complete. PostgreSQL (no database-wide write lock): claimed by an
    # INSERT first, which a concurrent request with the key waits on, then completed.
    assert touching == (["SELECT", "INSERT"] if rt.db.is_sqlite else ["INSERT", "UPDATE"])
    with rt.db.transaction() as s:
        stored = s.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == "once"))
        assert (stored.state, stored.response_status, stored.method) == ("completed", 201, "POST")
        assert json.loads(stored.response_body) == first.get_json()
    entries = _count(rt, LedgerEntry)
    again = roles["finance"].post(CHARGES, key="once", json=body)
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.get_json() == first.get_json()
    other = roles["finance"].post(CHARGES, key="once", json={**body, "amount": "11.00"})
    assert other.status_code == 409
    assert other.get_json()["error"]["fields"]["Idempotency-Key"]
    assert _count(rt, LedgerEntry) == entries


def test_an_abandoned_claim_on_a_charge_is_taken_over(roles, catalogue, frozen, rt, clinic) -> None:  # type: ignore[no-untyped-def]
    _admit(roles, catalogue)
    body = {"amount": "10.00", "article_id": catalogue["dressing"]}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(b"POST\n" + CHARGES.encode() + b"\n" + canonical).hexdigest()
    with rt.db.transaction() as s:
        s.add(IdempotencyRecord(
            portal_id=clinic.id, key="crashed", method="POST", path=CHARGES, request_hash=digest,
            principal="apikey:1", created_at=utcnow() - timedelta(minutes=5)))  # fmt: skip
    entries = _count(rt, LedgerEntry)
    response = roles["finance"].post(CHARGES, key="crashed", json=body)
    assert response.status_code == 201
    assert _count(rt, LedgerEntry) == entries + 1
    with rt.db.transaction() as s:
        records = s.scalars(select(IdempotencyRecord).where(IdempotencyRecord.key == "crashed")).all()
        assert [(r.state, r.response_status) for r in records] == [("completed", 201)]


def test_a_charge_that_crashes_leaves_no_record_and_the_key_works_again(
    roles, catalogue, frozen, rt, app, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import widget_server.http.api_stay as api_stay

    _admit(roles, catalogue)
    body = {"amount": "10.00", "article_id": catalogue["dressing"]}
    fail_first_call(monkeypatch, api_stay, "_entry_response", RuntimeError("disk hiccup"))
    app.config["PROPAGATE_EXCEPTIONS"] = False
    records, entries = _count(rt, IdempotencyRecord), _count(rt, LedgerEntry)
    assert roles["finance"].post(CHARGES, key="retry-me", json=body).status_code == 500
    assert (_count(rt, IdempotencyRecord), _count(rt, LedgerEntry)) == (records, entries)
    assert roles["finance"].post(CHARGES, key="retry-me", json=body).status_code == 201
    assert (_count(rt, IdempotencyRecord), _count(rt, LedgerEntry)) == (records + 1, entries + 1)
