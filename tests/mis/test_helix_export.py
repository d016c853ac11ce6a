"""Helix export files → appointments: the three formats agree, bad rows are named, bad files refused."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.helix.export import HelixFileError, parse_export
from connectors.types import AppointmentReject

FIXTURES = Path(__file__).parent.parent / "fixtures" / "helix"
MSK = ZoneInfo("Europe/Moscow")


def _parse(name: str):
    return parse_export((FIXTURES / name).read_bytes(), tz=MSK, filename=name)


def test_csv_xlsx_and_json_give_equal_appointments():
    csv_batch, xlsx_batch, json_batch = (_parse(f"visits_sample.{ext}") for ext in ("csv", "xlsx", "json"))
    assert csv_batch.rejects == xlsx_batch.rejects == json_batch.rejects == ()
    assert len(csv_batch.appointments) == 6
    assert csv_batch.appointments == xlsx_batch.appointments == json_batch.appointments
    day = date(2026, 3, 12)
    assert csv_batch.period == xlsx_batch.period == json_batch.period == (day, day)


def test_one_visit_read_in_full():
    first = _parse("visits_sample.csv").appointments[0]
    assert first.source == "helix_export"
    assert first.source_id == "HX-1001"
    assert first.status == "completed"
    assert first.starts_at == datetime(2026, 3, 12, 10, 0, tzinfo=MSK)
    assert first.ends_at == datetime(2026, 3, 12, 10, 45, tzinfo=MSK)
    assert first.changed_at == datetime(2026, 3, 12, 10, 50, tzinfo=MSK)
    assert (first.patient_id, first.patient_name, first.patient_phone) == (
        "P-501",
        "Смирнова Анна Петровна",
        "+7 (916) 123-45-67",
    )
    assert (first.doctor_id, first.doctor_name) == ("D-7", "Смирнов Игорь Петрович")
    assert first.specialty == "терапия"
    assert first.amount_minor == 250_000
    assert first.mis_primary is True
    assert first.card_number == "К-0501"
    assert first.booked_by == "Иванова О."
    assert first.channel == "сайт"


def test_statuses_are_case_and_yo_insensitive():
    statuses = [a.status for a in _parse("visits_sample.csv").appointments]
    assert statuses == ["completed", "booked", "confirmed", "no_show", "cancelled", "arrived"]
    waiting = [a.source_id for a in _parse("visits_sample.csv").appointments if a.waiting_list]
    assert waiting == ["HX-1003"]


def test_cp1251_and_no_bom_read_the_same():
    utf8 = (FIXTURES / "visits_sample.csv").read_bytes()
    cp1251 = utf8[3:].decode("utf-8").encode("cp1251")
    assert parse_export(cp1251, tz=MSK) == parse_export(utf8, tz=MSK) == parse_export(utf8[3:], tz=MSK)


HEADER = "ID визита;ФИО пациента;Телефон;Дата визита;Время начала;Время окончания;Статус;Сумма"
GOOD = "V1;Иванов Иван;+79161234567;12.03.2026;10:00;10:30;Записан;100"
P = "V2;Петров Пётр;+79161234567;"


@pytest.mark.parametrize(
    ("row", "field", "reason", "value"),
    [
        ("V2;;+79161234567;12.03.2026;10:00;10:30;Записан;", "patient_full_name", "required", ""),
        (P + "31.02.2026;10:00;10:30;Записан;", "visit_date", "not a date", "31.02.2026"),
        (P + "12.03.2026;10:00;10:30;Перенесён;", "status", "unknown status", "Перенесён"),
        (P + "12.03.2026;10:00;09:30;Записан;", "end_time", "ends before", "09:30"),
        (P + "12.03.2026;10:00;10:30;Записан;12,5р", "amount", "not a decimal", "12,5р"),
        (P + "12.03.2026;25:00;10:30;Записан;", "start_time", "not a time", "25:00"),
    ],
)
def test_a_bad_row_is_named_and_the_rest_imports(row, field, reason, value):
    batch = parse_export(f"{HEADER}\n{GOOD}\n{row}\n".encode(), tz=MSK)
    assert [a.source_id for a in batch.appointments] == ["V1"]
    assert len(batch.rejects) == 1
    reject = batch.rejects[0]
    assert (reject.row, reject.field, reject.value) == (2, field, value)
    assert reason in reject.reason


def test_one_visit_twice_with_different_content_is_refused_in_both_rows():
    other = GOOD.replace("10:00", "11:00").replace("10:30", "11:30")
    batch = parse_export(f"{HEADER}\n{GOOD}\n{GOOD}\n{other}\n".encode(), tz=MSK)
    assert batch.appointments == ()
    assert [(r.row, r.field) for r in batch.rejects] == [(1, "visit_id"), (2, "visit_id"), (3, "visit_id")]
    identical = parse_export(f"{HEADER}\n{GOOD}\n{GOOD}\n".encode(), tz=MSK)
    assert len(identical.appointments) == 1 and identical.rejects == ()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"ID;Name\n1;x\n", "visit_id"),
        ("ID визита;ФИО пациента;Телефон;Дата визита;Время начала\n".encode(), "status"),
        (b"{not json", "file"),
        (b"PK\x03\x04 broken archive", "file"),
        (b"", "file"),
        (("Период;12.03.2026\n" + HEADER + "\n").encode(), "period"),
    ],
)
def test_an_unreadable_file_or_missing_header_is_refused_whole(data, field):
    with pytest.raises(HelixFileError) as err:
        parse_export(data, tz=MSK)
    assert err.value.field == field


def test_reject_type():
    batch = parse_export(f"{HEADER}\nV9;;1;12.03.2026;10:00;;Записан;\n".encode(), tz=MSK)
    assert batch.rejects == (AppointmentReject(1, "patient_full_name", "required", "", "V9"),)
