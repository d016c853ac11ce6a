"""The SQLite writer gate: a write transaction holds the gate file's flock from BEGIN IMMEDIATE until its
COMMIT or ROLLBACK, a read takes nothing, and a thread's descriptor goes away with the thread."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from widget_server.db import Database, mark_read_only


@pytest.fixture()
def db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'gate.sqlite3'}")
    with database.transaction() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    yield database
    database.dispose()


def gate_taken(db: Database) -> bool:
    """Whether any transaction holds the gate, asked through a descriptor of our own."""
    path = Path(db.engine.url.database + ".writer-lock")
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_write_transaction_holds_the_gate_until_commit(db):
    session = db.session()
    session.execute(text("INSERT INTO t VALUES (1)"))
    assert gate_taken(db)
    session.commit()
    assert not gate_taken(db)
    session.close()


def test_a_rollback_and_a_closed_session_open_the_gate(db):
    session = db.session()
    session.execute(text("INSERT INTO t VALUES (1)"))
    session.rollback()
    assert not gate_taken(db)
    session.execute(text("INSERT INTO t VALUES (2)"))
    assert gate_taken(db)
    session.close()  # the pool's reset on return rolls back
    assert not gate_taken(db)
    with db.transaction() as check:
        assert check.execute(text("SELECT count(*) FROM t")).scalar() == 0


def test_a_read_only_transaction_takes_no_gate(db):
    session = db.session()
    mark_read_only(session)
    session.execute(text("SELECT count(*) FROM t"))
    assert not gate_taken(db)
    session.close()


def test_writers_in_other_threads_wait_for_the_gate_and_all_commit(db):
    holder = db.session()
    holder.execute(text("INSERT INTO t VALUES (0)"))
    started, done = threading.Barrier(5), []

    def write(n: int) -> None:
        started.wait()
        with db.transaction() as session:
            session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
        done.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    started.wait()
    threads[0].join(0.2)
    assert done == []  # nobody got past the holder
    holder.commit()
    holder.close()
    for thread in threads:
        thread.join(10)
    assert sorted(done) == [1, 2, 3, 4]
    assert not gate_taken(db)


def test_a_finished_thread_leaves_no_descriptor_open(db):
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def write() -> None:
        with db.transaction() as session:
            session.execute(text("INSERT INTO t VALUES (1)"))

    write()  # this thread's own descriptor, and the pool's connection, exist from here on
    before = fds()
    for _ in range(5):
        thread = threading.Thread(target=write)
        thread.start()
        thread.join()
    db.engine.pool.dispose()  # the threads' pooled connections are not what this test is about
    assert fds() <= before


def test_a_web_workers_request_thread_waits_in_the_kernel_and_gets_the_gate_on_release(db, monkeypatch):
    from widget_server import sqlite_writer_gate

    monkeypatch.setattr(sqlite_writer_gate, "_blocking_thread", None)
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        session = db.session()
        session.execute(text("INSERT INTO t VALUES (1)"))
        holding.set()
        release.wait(5)
        session.commit()
        session.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(5)
    sqlite_writer_gate.wait_blocking()

    def no_polling(_seconds: float) -> None:
        raise AssertionError("a blocking waiter must not poll")

    monkeypatch.setattr(sqlite_writer_gate.time, "sleep", no_polling)
    threading.Timer(0.2, release.set).start()
    session = db.session()
    session.execute(text("INSERT INTO t VALUES (2)"))  # blocks in flock until the holder commits
    assert release.is_set()
    session.commit()
    session.close()
    thread.join(5)
    with db.transaction() as check:
        assert check.execute(text("SELECT count(*) FROM t")).scalar() == 2


def test_only_the_registered_thread_blocks_and_a_fork_forgets_it(db, monkeypatch):
    from widget_server import sqlite_writer_gate

    monkeypatch.setattr(sqlite_writer_gate, "_blocking_thread", None)
    sqlite_writer_gate.wait_blocking()
    assert sqlite_writer_gate._blocking_thread == threading.get_ident()
    pid = os.fork()
    if pid == 0:  # the child: a new worker registers its own request thread
        os._exit(0 if sqlite_writer_gate._blocking_thread is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
