from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from ..reports.clinic_data import Clinic


@pytest.fixture
def clinic(rt, portal) -> Clinic:  # type: ignore[no-untyped-def]
    return Clinic(rt, portal)


@pytest.fixture
def statements(rt):  # type: ignore[no-untyped-def]
    """Counts the SQL statements sent inside `with statements() as seen:` (seen is a list of them)."""

    @contextmanager
    def counting() -> Iterator[list[str]]:
        seen: list[str] = []

        def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
            seen.append(statement)

        event.listen(rt.db.engine, "before_cursor_execute", record)
        try:
            yield seen
        finally:
            event.remove(rt.db.engine, "before_cursor_execute", record)

    return counting
