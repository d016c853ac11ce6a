"""Engine and session factory shared by the web app, rq jobs and the CLI.

SQLite is the embedded default. Its writers are serialised with BEGIN IMMEDIATE: the default deferred BEGIN
lets two transactions read the same row and both write, losing an update (ecosystem.md §3 measured 25/100).
PostgreSQL uses row locks (SELECT … FOR UPDATE) in the code that needs them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from .sqlite_checkpoints import DEFAULT_INTERVAL_S, Checkpointer
from .sqlite_writer_gate import WriterGate

__all__ = ["READ_ONLY", "Database", "mark_read_only"]

SQLITE_BUSY_TIMEOUT_S = 30
READ_ONLY = "clinicbridge_read_only"
"""Execution option: this transaction only reads (SQLite then uses a deferred BEGIN)."""


def mark_read_only(session: Session) -> None:
    """Declare the session's next transaction read-only. Must be called before it runs any statement."""
    session.connection(execution_options={READ_ONLY: True})


class Database:
    """One engine and one session factory per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._file: Path | None = None
        self._gate: WriterGate | None = None
        self._checkpointer: Checkpointer | None = None
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
            )
            gate = None
            if parsed.database and parsed.database != ":memory:":
                self._file = Path(parsed.database)
                gate = self._gate = WriterGate(self._file, SQLITE_BUSY_TIMEOUT_S)
            _install_sqlite_hooks(self.engine, gate, lambda: self._checkpointer is not None)
        else:
            # pool_recycle instead of pre_ping: a ping is a round trip on every checkout, i.e. every request.
            self.engine = create_engine(url, echo=echo, pool_recycle=1800, pool_size=10, max_overflow=20)
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        # rq forks a work-horse per job: pooled connections must not be shared with the parent.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The checkpoint thread does not survive a fork: the child's connections checkpoint themselves.
        self._checkpointer = None
        self.engine.dispose(close=False)

    def checkpoint_in_background(self, interval_s: float = DEFAULT_INTERVAL_S) -> bool:
        """On a SQLite file: take WAL checkpoints in a thread of this process rather than in the COMMIT of
        whichever of its writers fills the log (`sqlite_checkpoints`). For a web worker, after fork. Whether
        it is on."""
        if not self.is_sqlite or self._file is None:
            return False
        if self._checkpointer is None:
            checkpointer = Checkpointer(self._file, self._gate, interval_s)
            checkpointer.start()
            self._checkpointer = checkpointer
            # Connections opened so far still checkpoint in their COMMIT; new ones will not.
            self.engine.dispose(close=False)
        return True

    def stop_background_checkpoints(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()

    @property
    def backend(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    def session(self) -> Session:
        return self.sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any exception."""
        with self.sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.stop_background_checkpoints()
        self.engine.dispose()


def _begin(connection: Connection, sql: str) -> None:
    """BEGIN on the DBAPI cursor: `exec_driver_sql` costs twenty times the statement (an execution context
    for a statement with no parameters and no result), and every transaction runs one. Cursor listeners
    (SQL tracing, statement counts) still see it; driver errors are raised as SQLAlchemy's, as there."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for listener in connection.dispatch.before_cursor_execute:
            listener(connection, cursor, sql, (), None, False)
        cursor.execute(sql)
    except connection.dialect.loaded_dbapi.Error as error:
        raise exc.DBAPIError.instance(
            sql, (), error, connection.dialect.loaded_dbapi.Error, dialect=connection.dialect
        ) from error
    finally:
        cursor.close()


def _install_sqlite_hooks(
    engine: Engine, gate: WriterGate | None, checkpoints_in_background: Callable[[], bool]
) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Take transaction control away from pysqlite so that our BEGIN IMMEDIATE is the only BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if checkpoints_in_background():
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        # Readers marked read_only (authentication, GET requests) take no write lock: in WAL mode they
        # run beside the one writer instead of queueing behind it.
        if connection.get_execution_options().get(READ_ONLY):
            _begin(connection, "BEGIN")
            return
        if gate is None:
            _begin(connection, "BEGIN IMMEDIATE")
            return
        gate.enter(connection.connection)
        try:
            _begin(connection, "BEGIN IMMEDIATE")
        except BaseException:
            gate.leave(connection.connection)
            raise

    if gate is None:
        return
    # The gate opens after the COMMIT or ROLLBACK itself (the engine's commit event fires before it).
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection) -> None:  # type: ignore[no-untyped-def]
        try:
            commit(dbapi_connection)
        finally:
            gate.leave(dbapi_connection)

    def do_rollback(dbapi_connection) -> None:  # type: ignore[no-untyped-def]
        try:
            rollback(dbapi_connection)
        finally:
            gate.leave(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    @event.listens_for(engine.pool, "close")
    @event.listens_for(engine.pool, "invalidate")
    def _on_gone(dbapi_connection, *_args) -> None:  # type: ignore[no-untyped-def]
        gate.leave(dbapi_connection)
