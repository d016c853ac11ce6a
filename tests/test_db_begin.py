"""SQLite transactions begin on the DBAPI cursor (db._begin): write transactions take the write lock at
once, reads do not, cursor listeners see the BEGIN, and a failing BEGIN raises SQLAlchemy's error."""

from __future__ import annotations

import pytest
from sqlalchemy import event, exc

from widget_server.db import _begin, mark_read_only


@pytest.fixture
def db(scratch_sqlite):  # type: ignore[no-untyped-def]
    return scratch_sqlite


def test_a_write_transaction_holds_the_write_lock_from_its_begin_and_a_read_does_not(db) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    reader, writer = db.session(), db.session()
    try:
        mark_read_only(reader)
        writer.connection()  # begins: nothing executed yet
        assert seen == ["BEGIN", "BEGIN IMMEDIATE"]
        other = db.engine.raw_connection()
        try:
            other.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(Exception, match="locked"):
                other.execute("BEGIN IMMEDIATE")  # the writer's BEGIN IMMEDIATE already took the lock
            assert other.execute("SELECT count(*) FROM t").fetchone() == (0,)  # reads go on beside it
        finally:
            other.close()
    finally:
        reader.close()
        writer.close()


def test_a_failing_begin_raises_sqlalchemys_error(db) -> None:  # type: ignore[no-untyped-def]
    with db.engine.connect() as connection:
        connection.connection.dbapi_connection.execute("BEGIN")
        with pytest.raises(exc.OperationalError, match="within a transaction"):
            _begin(connection, "BEGIN")
        connection.connection.dbapi_connection.execute("ROLLBACK")
