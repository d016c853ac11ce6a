"""A web worker's SQLite checkpoints run in a thread: its connections never checkpoint inside a COMMIT,
and the thread folds the write-ahead log back into the database while writers go on."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from widget_server.db import Database


def _autocheckpoint(db: Database) -> int:
    with db.engine.connect() as connection:
        return connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()


@pytest.fixture
def db(scratch_sqlite):  # type: ignore[no-untyped-def]
    return scratch_sqlite


def test_a_web_worker_checkpoints_in_a_thread_not_in_its_commits(db) -> None:  # type: ignore[no-untyped-def]
    assert _autocheckpoint(db) == 1000  # SQLite's default: the COMMIT that fills the log checkpoints
    assert db.checkpoint_in_background(interval_s=0.02)
    assert _autocheckpoint(db) == 0  # connections opened since leave it to the thread
    checkpointer = db._checkpointer
    assert checkpointer is not None and checkpointer.is_alive()
    for n in range(60):
        with db.transaction() as session:
            session.execute(text("INSERT INTO t VALUES (:x, :pad)"), {"x": n, "pad": "x" * 3000})
    deadline = time.monotonic() + 10
    while checkpointer.checkpointed_pages < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpointer.checkpointed_pages >= 60  # every commit's pages reached the database file
    db.stop_background_checkpoints()
    assert not checkpointer.is_alive()
    other = Database(db.url)  # another process's (or another database's) connections are unchanged
    try:
        assert _autocheckpoint(other) == 1000
    finally:
        other.dispose()


def test_only_a_sqlite_file_checkpoints_in_the_background(tmp_path) -> None:  # type: ignore[no-untyped-def]
    memory = Database("sqlite://")
    try:
        assert not memory.checkpoint_in_background()
    finally:
        memory.dispose()


def test_a_long_log_is_folded_back_whole_under_the_writer_gate_and_starts_over(db) -> None:  # type: ignore[no-untyped-def]
    """A PASSIVE checkpoint beside writers never lets the log restart under sustained writes; past
    `restart_pages` the remainder is copied with the writer gate held, and the next writer rewinds the log."""
    from widget_server.sqlite_checkpoints import Checkpointer

    def write(n: int) -> None:
        for x in range(n):
            with db.transaction() as session:
                session.execute(text("INSERT INTO t VALUES (:x, :pad)"), {"x": x, "pad": "x" * 3000})

    gate = db._gate
    held: list[bool] = []
    checkpointer = Checkpointer(db._file, gate, restart_pages=40)
    real_once = checkpointer.checkpoint_once

    def once() -> tuple[int, int, int]:
        held.append(getattr(gate._local, "owner", None) is not None)
        return real_once()

    checkpointer.checkpoint_once = once  # type: ignore[method-assign]
    write(10)
    checkpointer.round()  # a short log: one checkpoint beside the writers, the gate left alone
    assert (held, checkpointer.restarts) == ([False], 0)
    write(60)
    checkpointer.round()
    assert (held[1:], checkpointer.restarts) == ([False, True], 1)
    write(1)  # this writer finds the whole log copied back: it starts the log over
    _busy, pages, _copied = checkpointer.checkpoint_once()
    checkpointer.close()
    assert pages < 10
