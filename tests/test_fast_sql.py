"""fast_sql.run reads and writes exactly what SQLAlchemy's own execution would, on SQLite and PostgreSQL
(TEST_DATABASE_URL), in the session's transaction."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import bindparam, event, exc, func, insert, select, update

from widget_server import clock, fast_sql
from widget_server.ledger import Actor, Admission, admit
from widget_server.models import IdempotencyRecord, LedgerEntry, OutboxJob, Portal, StayAccount, Tariff

_OUTBOX = OutboxJob.__table__
_INSERT_JOB = insert(_OUTBOX).returning(_OUTBOX.c.id)
_JOB = select(*_OUTBOX.columns).where(_OUTBOX.c.id == bindparam("id"))
_TOUCH_JOB = update(_OUTBOX).where(_OUTBOX.c.id == bindparam("job_id"))
_CLAIM = insert(IdempotencyRecord.__table__).returning(IdempotencyRecord.__table__.c.id)
_ENTRIES = select(*LedgerEntry.__table__.columns).where(LedgerEntry.account_id == bindparam("account_id"))
_ACCOUNT = select(StayAccount.admission_date, StayAccount.status).where(StayAccount.id == bindparam("id"))
_OPEN_ACCOUNTS = select(func.count()).where(StayAccount.status == "open")
_EXPANDING = select(LedgerEntry.id).where(LedgerEntry.id.in_(bindparam("ids", expanding=True)))

NOW = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def frozen(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(clock, "now_utc", lambda: NOW)


def _job(portal_id: int, key: str, **overrides: object) -> dict:
    values: dict = {
        "portal_id": portal_id,
        "operation": "add_note",
        "deal_id": None,
        "payload": {"text": "Списание 1 500,00 ₽", "nested": {"list": [1, 2.5, None, True]}, "none": None},
        "idempotency_key": key,
        "origin": None,
        "state": "pending",
        "attempts": 0,
        "max_attempts": 12,
        "next_attempt_at": datetime(2026, 11, 24, 12, 0, tzinfo=UTC) + timedelta(hours=3),
        "lease_until": None,
        "last_error": None,
        "result": None,
        "created_at": NOW,
        "updated_at": NOW,
        "done_at": None,
    }
    values.update(overrides)
    return values


def test_a_row_written_by_run_reads_back_as_sqlalchemy_wrote_its_twin(rt, portal) -> None:  # type: ignore[no-untyped-def]
    moscow = datetime(2026, 11, 24, 15, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Moscow"))
    with rt.db.transaction() as session:
        fast_id = fast_sql.run(
            session, _INSERT_JOB, _job(portal.id, "fast", lease_until=moscow, deal_id="42")
        ).scalar_one()
        orm_id = session.execute(
            insert(_OUTBOX).returning(_OUTBOX.c.id), _job(portal.id, "orm", lease_until=moscow, deal_id="42")
        ).scalar_one()
    with rt.db.transaction() as session:
        fast = session.get(OutboxJob, fast_id)
        orm = session.get(OutboxJob, orm_id)
        columns = [c.key for c in _OUTBOX.columns if c.key not in ("id", "idempotency_key")]
        assert {c: getattr(fast, c) for c in columns} == {c: getattr(orm, c) for c in columns}
        assert fast.lease_until == datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
        assert fast.lease_until.tzinfo is UTC
        assert fast.payload["nested"] == {"list": [1, 2.5, None, True]}
        # Python None in a JSON column is JSON null (SQLAlchemy's rule), an explicit SQL NULL elsewhere.
        assert fast.result is None and fast.done_at is None and fast.origin is None


def test_rows_read_by_run_equal_sqlalchemys_rows(rt, portal, frozen) -> None:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        job_id = session.execute(insert(_OUTBOX).returning(_OUTBOX.c.id), _job(portal.id, "k")).scalar_one()
        tariff = Tariff(portal_id=portal.id, name="Стандарт", daily_rate_minor=350_000)
        session.add(tariff)
        session.flush()
        account = admit(
            session,
            session.get(Portal, portal.id),
            Admission(
                deal_id="7",
                admission_date=date(2026, 11, 20),
                tariff_id=tariff.id,
                representative_name="Иванова Мария",
                deposit_minor=1_000_00,
                deposit_method="cash",
            ),
            Actor(label="test", source="api", roles=frozenset({"staff", "finance"})),
            "admit-7",
        )
        account_id = account.id
    with rt.db.transaction() as session:
        for statement, params in (
            (_JOB, {"id": job_id}),
            (_ENTRIES, {"account_id": account_id}),
            (_ACCOUNT, {"id": account_id}),
            (_OPEN_ACCOUNTS, {}),
        ):
            fast = fast_sql.run(session, statement, params).all()
            expected = session.execute(statement, params).all()
            assert [tuple(row) for row in fast] == [tuple(row) for row in expected]
            assert [row._fields for row in fast][:1] == [tuple(row._fields) for row in expected][:1]
        entry = fast_sql.run(session, _ENTRIES, {"account_id": account_id}).one()
        assert entry.entry_date == date(2026, 11, 24)  # the deposit is dated the day it is taken
        assert entry.created_at.tzinfo is UTC
        assert entry.overdraft_override is False
        assert entry.service_date is None
        job = fast_sql.run(session, _JOB, {"id": job_id}).one()
        assert job.payload["text"] == "Списание 1 500,00 ₽"
        assert job.next_attempt_at == datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def test_column_defaults_and_onupdate_are_computed_as_the_execution_context_would(
    rt, portal, frozen, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    values = {
        "portal_id": portal.id,
        "key": "k1",
        "method": "POST",
        "path": "/x",
        "request_hash": "h",
        "principal": "p",
    }
    with rt.db.transaction() as session:
        record_id = fast_sql.run(session, _CLAIM, values).scalar()
        job_id = fast_sql.run(session, _INSERT_JOB, _job(portal.id, "j")).scalar_one()
    later = NOW + timedelta(minutes=5)
    monkeypatch.setattr(clock, "now_utc", lambda: later)
    with rt.db.transaction() as session:
        result = fast_sql.run(session, _TOUCH_JOB, {"job_id": job_id, "attempts": 3})
        assert result.rowcount == 1
    with rt.db.transaction() as session:
        record = session.get(IdempotencyRecord, record_id)
        assert (record.state, record.created_at) == ("in_progress", NOW)
        job = session.get(OutboxJob, job_id)
        assert (job.attempts, job.updated_at) == (3, later)


def test_run_is_the_sessions_transaction(rt, portal) -> None:  # type: ignore[no-untyped-def]
    session = rt.db.session()
    try:
        session.add(OutboxJob(**_job(portal.id, "pending-orm")))
        # Pending ORM changes are flushed first, as autoflush would.
        count = select(func.count()).select_from(_OUTBOX).where(_OUTBOX.c.portal_id == bindparam("p"))
        assert fast_sql.run(session, count, {"p": portal.id}).scalar() == 1
        fast_sql.run(session, _INSERT_JOB, _job(portal.id, "fast"))
        assert fast_sql.run(session, count, {"p": portal.id}).scalar() == 2
        session.rollback()
        assert fast_sql.run(session, count, {"p": portal.id}).scalar() == 0
    finally:
        session.close()


def test_driver_errors_are_sqlalchemys_and_unsupported_statements_are_refused(rt, portal) -> None:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        fast_sql.run(session, _INSERT_JOB, _job(portal.id, "dup"))
    session = rt.db.session()
    try:
        with pytest.raises(exc.IntegrityError):
            fast_sql.run(session, _INSERT_JOB, _job(portal.id, "dup"))
        session.rollback()
        with pytest.raises(ValueError, match="post-compile"):
            fast_sql.run(session, _EXPANDING, {"ids": [1, 2]})
        with pytest.raises(exc.ArgumentError, match="account_id"):
            fast_sql.run(session, _ENTRIES, {})
    finally:
        session.close()


def test_cursor_event_listeners_see_the_statements(rt, portal) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def listener(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(rt.db.engine, "before_cursor_execute", listener)
    try:
        with rt.db.transaction() as session:
            fast_sql.run(session, _OPEN_ACCOUNTS)
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", listener)
    assert any(text.startswith("SELECT count(*)") for text in seen), seen


def test_read_alone_reads_beside_a_writer_without_a_transaction_of_its_own(rt, portal) -> None:  # type: ignore[no-untyped-def]
    if not rt.db.is_sqlite:
        with pytest.raises(ValueError, match="SQLite"):
            fast_sql.read_alone(rt.db.engine, _OPEN_ACCOUNTS)
        return
    seen: list[str] = []

    def listener(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    with rt.db.transaction() as session:
        fast_sql.run(session, _INSERT_JOB, _job(portal.id, "committed"))
    writer = rt.db.session()
    event.listen(rt.db.engine, "before_cursor_execute", listener)
    try:
        # A writer holds the write lock with an uncommitted row: the lone read neither waits for it nor
        # sees its row (WAL: the statement reads the last committed state).
        fast_sql.run(writer, _INSERT_JOB, _job(portal.id, "uncommitted"))
        count = select(func.count()).select_from(_OUTBOX).where(_OUTBOX.c.portal_id == bindparam("p"))
        seen.clear()
        assert fast_sql.read_alone(rt.db.engine, count, {"p": portal.id}).scalar() == 1
        assert [text.split()[0] for text in seen] == ["SELECT"]  # no BEGIN, no COMMIT
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", listener)
        writer.rollback()
        writer.close()
    with pytest.raises(ValueError, match="SELECT"):
        fast_sql.read_alone(rt.db.engine, _INSERT_JOB, _job(portal.id, "x"))


def test_run_follows_the_session_from_one_transaction_to_the_next(rt, portal) -> None:  # type: ignore[no-untyped-def]
    count = select(func.count()).select_from(_OUTBOX).where(_OUTBOX.c.portal_id == bindparam("p"))
    session = rt.db.session()
    try:
        fast_sql.run(session, _INSERT_JOB, _job(portal.id, "first"))
        first = session.connection()
        session.commit()
        # A new transaction: run must not reuse the connection the committed one returned to the pool.
        fast_sql.run(session, _INSERT_JOB, _job(portal.id, "second"))
        assert session.connection() is not first
        with session.begin_nested():
            fast_sql.run(session, _INSERT_JOB, _job(portal.id, "nested"))
            assert fast_sql.run(session, count, {"p": portal.id}).scalar() == 3
        session.rollback()
        assert fast_sql.run(session, count, {"p": portal.id}).scalar() == 1
    finally:
        session.close()
