"""SQLite's WAL checkpoints taken by a background thread instead of by whichever request commits.

In WAL mode every commit appends the pages it changed to the write-ahead log; a checkpoint copies them back
into the database file and, with `synchronous=NORMAL`, fsyncs both files. By default the connection whose
commit takes the log past 1 000 pages runs that checkpoint inside its COMMIT: on the charge path that is
every ~75th charge, and it took 4–6 ms (the copy plus two fsyncs) while that request still held the writer
gate, so every other writer of the web process queued behind a checkpoint instead of a millisecond-long
transaction (in-process: 52 checkpoints in 3 000 charges, 212 ms of 414 ms spent in COMMIT).

A web worker (`gunicorn_conf.post_worker_init` → `Database.checkpoint_in_background`) therefore turns the
automatic checkpoint off on its own connections and runs a thread that takes a PASSIVE checkpoint every
`interval_s`: PASSIVE copies what no reader still needs without waiting for readers or writers, so it
runs beside the writers and never blocks them (nor does it use the writer gate). Several workers doing the
same is harmless: SQLite lets one checkpoint run at a time and the others return at once.

A PASSIVE checkpoint alone never lets the log start over under sustained writes: SQLite rewinds the log
only for a writer that begins when every frame has been copied back, and writers append while the copy
runs (the benchmark's log grew by 46 MB a second). So when the log is longer than `restart_pages`, the
thread takes the writer gate — no writer of any process can append then — and copies the remainder, the
frames written during the copy just made: a few dozen pages and their fsyncs, ~2 ms in the gate about
once a second at full load, where the automatic checkpoint held it 4–6 ms ten times a second. The next
writer then rewinds the log (unless a reader is still on it; then the next round tries again).

Other processes (rq workers, the CLI, tests) keep SQLite's automatic checkpoint, so a database written
only by them still has its log folded back; so do other databases of the web worker (the sandbox CRM's).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from .sqlite_writer_gate import WriterGate

__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_RESTART_PAGES", "Checkpointer"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.1
"""At ~800 charges/s (13 pages each) the log grows by ~1 000 pages between checkpoints: SQLite's default."""
DEFAULT_RESTART_PAGES = 8192
"""A log this long (32 MB of 4 KB pages) is folded back whole under the writer gate, so that it restarts."""


class Checkpointer(threading.Thread):
    """A daemon thread taking a PASSIVE checkpoint of one database every `interval_s`."""

    def __init__(
        self,
        database: Path,
        gate: WriterGate | None,
        interval_s: float = DEFAULT_INTERVAL_S,
        restart_pages: int = DEFAULT_RESTART_PAGES,
    ) -> None:
        super().__init__(name=f"sqlite-checkpoints:{database.name}", daemon=True)
        self.database = database
        self.gate = gate
        self.interval_s = interval_s
        self.restart_pages = restart_pages
        self.restarts = 0
        """Rounds that folded a long log back completely under the writer gate."""
        self.stopping = threading.Event()
        self.checkpoints = 0
        self.checkpointed_pages = 0
        """Checkpoints taken and pages they copied into the database (tests wait on these)."""
        self._connection: sqlite3.Connection | None = None

    def checkpoint_once(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, pages in the log, pages checkpointed), as SQLite reports them."""
        if self._connection is None:
            # Its own connection, never a pooled one: a checkpoint needs no transaction and no writer gate.
            self._connection = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
        busy, pages, checkpointed = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        self.checkpointed_pages += max(0, checkpointed)
        return int(busy), int(pages), int(checkpointed)

    def round(self) -> None:
        """One round: a PASSIVE checkpoint beside the writers, and, where the log has grown long, its
        remainder under the writer gate so that the log can start over."""
        _busy, pages, _copied = self.checkpoint_once()
        if pages < self.restart_pages or self.gate is None:
            return
        connection = self._connection
        self.gate.enter(connection)
        try:
            self.checkpoint_once()
        finally:
            self.gate.leave(connection)
        self.restarts += 1

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.round()
            except sqlite3.Error:  # a checkpoint missed now is taken at the next interval
                log.warning("background WAL checkpoint of %s failed", self.database, exc_info=True)
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def stop(self, timeout_s: float = 2.0) -> None:
        self.stopping.set()
        self.join(timeout_s)
