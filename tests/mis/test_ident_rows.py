"""IDENT reception rows → appointments: status derivation over every timestamp combination, the two readers
(database view and export) agreeing on the fixture rows, and the incremental cursor's overlap."""

from __future__ import annotations

import itertools
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.mis_ident.readers import IdentDbReader, IdentExportError, IdentExportReader
from connectors.mis_ident.rows import COLUMNS, derive_status, map_reception_row
from connectors.types import AppointmentReject

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ident"
MSK = ZoneInfo("Europe/Moscow")
NO_SHOW = frozenset({"8"})
ROWS = json.loads((FIXTURES / "receptions.json").read_text(encoding="utf-8"))

STAMP = "2026-03-12 10:05:00"
FLAGS = ("PatientAppeared", "ReceptionStarted", "ReceptionEnded", "ReceptionCanceled", "CheckIssued")


def _expected(flags: dict[str, bool], reason: str | None) -> str:
    if flags["ReceptionCanceled"] or reason is not None:
        return "no_show" if reason == "8" else "cancelled"
    if flags["ReceptionEnded"] or flags["CheckIssued"]:
        return "completed"
    if flags["ReceptionStarted"] or flags["PatientAppeared"]:
        return "arrived"
    return "booked"


COMBINATIONS = [
    (dict(zip(FLAGS, bits, strict=True)), reason)
    for bits in itertools.product((False, True), repeat=len(FLAGS))
    for reason in (None, "8", "3")
]


@pytest.mark.parametrize(("flags", "reason"), COMBINATIONS, ids=lambda v: str(v))
def test_status_precedence_over_every_timestamp_combination(flags, reason):
    row = {name: ((1 if name == "CheckIssued" else STAMP) if on else None) for name, on in flags.items()}
    row["ID_ReceptionCancelReasons"] = reason
    status, why = derive_status(row, NO_SHOW)
    assert status == _expected(flags, reason)
    assert why == reason


def test_a_past_plan_end_alone_is_never_a_no_show():
    row = dict(ROWS[0], PlanStart="2020-01-01 10:00:00", PlanEnd="2020-01-01 10:30:00")
    mapped = map_reception_row(row, row_number=1, tz=MSK, no_show_reasons=NO_SHOW)
    assert mapped.status == "booked"


def test_fixture_rows_map_in_full():
    mapped = [
        map_reception_row(r, row_number=i, tz=MSK, no_show_reasons=NO_SHOW) for i, r in enumerate(ROWS, 1)
    ]
    assert [m.status for m in mapped] == ["booked", "completed", "no_show", "cancelled", "arrived"]
    first = mapped[0]
    assert first.source == "ident_db" and first.source_id == "90001"
    assert first.starts_at == datetime(2026, 3, 12, 10, 0, tzinfo=MSK)
    assert first.changed_at == datetime(2026, 3, 5, 18, 2, 11, 123000, tzinfo=MSK)
    assert (first.patient_id, first.patient_name, first.patient_phone) == (
        "4401",
        "Смирнова Анна Петровна",
        "+7 916 123-45-67",
    )
    assert (first.doctor_id, first.doctor_name, first.specialty, first.branch) == (
        "17",
        "Смирнов Игорь Петрович",
        "терапия",
        "Центральный",
    )
    assert first.mis_primary is True and first.booked_by == "Иванова Ольга" and first.version == "1001"
    assert mapped[1].patient_phone == "89261112233"  # the landline column when there is no mobile
    assert mapped[2].status_reason == "Не пришёл"
    assert mapped[4].rescheduled_from == "90001"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"ID": None}, "ID", "required"),
        ({"ID_Patients": ""}, "ID_Patients", "required"),
        ({"PlanStart": "31.02.2026 10:00"}, "PlanStart", "not a date and time"),
        ({"PlanEnd": "2026-03-12 09:00:00"}, "PlanEnd", "ends before it starts"),
    ],
)
def test_bad_rows_are_rejected_by_column(change, field, reason):
    mapped = map_reception_row(dict(ROWS[0], **change), row_number=4, tz=MSK, no_show_reasons=NO_SHOW)
    assert isinstance(mapped, AppointmentReject)
    assert (mapped.row, mapped.field, mapped.reason) == (4, field, reason)


def _sqlite_with_view_rows() -> sqlite3.Connection:
    # Stands in for SQL Server: the reader's one query runs unchanged on a table named like the view.
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE cb_receptions ({', '.join(COLUMNS)})")
    conn.executemany(
        f"INSERT INTO cb_receptions VALUES ({', '.join('?' for _ in COLUMNS)})",
        [[r[c] for c in COLUMNS] for r in ROWS],
    )
    return conn


class _Keep:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def cursor(self):
        return self.conn.cursor()

    def close(self) -> None:
        pass


def test_database_and_export_readers_agree():
    conn = _sqlite_with_view_rows()
    from_db = IdentDbReader(lambda: _Keep(conn), tz=MSK, no_show_reasons=NO_SHOW).fetch(None)
    export = IdentExportReader(
        (FIXTURES / "receptions_export.csv").read_bytes(), tz=MSK, no_show_reasons=NO_SHOW
    ).fetch(None)
    as_json = IdentExportReader(json.dumps(ROWS).encode(), tz=MSK, no_show_reasons=NO_SHOW).fetch(None)
    assert sorted(from_db.appointments, key=lambda a: a.source_id) == sorted(
        export.appointments, key=lambda a: a.source_id
    )
    assert set(export.appointments) == set(as_json.appointments)
    assert from_db.next_cursor == "2026-03-12T16:03:00+03:00"


def test_incremental_read_overlaps_five_minutes():
    conn = _sqlite_with_view_rows()
    reader = IdentDbReader(lambda: _Keep(conn), tz=MSK, no_show_reasons=NO_SHOW)
    # 14:31 is within five minutes of the cursor, 11:31 is not.
    batch = reader.fetch("2026-03-12T14:35:00+03:00")
    assert [a.source_id for a in batch.appointments] == ["90003", "90005"]
    assert batch.next_cursor == "2026-03-12T16:03:00+03:00"
    assert reader.fetch(batch.next_cursor).next_cursor == batch.next_cursor


def test_an_export_without_a_required_column_is_refused():
    with pytest.raises(IdentExportError, match="PlanStart"):
        IdentExportReader(b"ID;DateTimeChanged;ID_Patients\n1;2026-03-12 10:00:00;5\n", tz=MSK)
