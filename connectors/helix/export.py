"""Helix daily visits export → appointments. Helix has no public API (research/mis.md §2): the clinic drops
one file a day (CSV `;`, UTF-8 with or without BOM or cp1251; XLSX; or JSON) into a watch folder or uploads
it. The column set and the period line are described in `tests/fixtures/helix/README.md`.

A bad row becomes a reject naming row, column, reason and value and the rest of the file imports; a file
that cannot be read, or lacks a required header, raises `HelixFileError` and nothing is imported.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from ..types import Appointment, AppointmentBatch, AppointmentReject

__all__ = [
    "ALIASES",
    "REQUIRED",
    "SOURCE",
    "STATUSES",
    "HelixFileError",
    "HelixFileReader",
    "parse_export",
    "read_rows",
]

SOURCE = "helix_export"

# Canonical column → the headers Helix installations and hand-made exports use for it.
ALIASES: dict[str, tuple[str, ...]] = {
    "visit_id": ("visit_id", "id визита", "номер визита", "визит"),
    "patient_id": ("patient_id", "id пациента", "код пациента"),
    "patient_full_name": ("patient_full_name", "пациент", "фио пациента", "фио"),
    "phone": ("phone", "телефон", "телефон пациента"),
    "birth_date": ("birth_date", "дата рождения"),
    "card_number": ("card_number", "номер карты", "карта"),
    "branch": ("branch", "филиал", "клиника"),
    "doctor_id": ("doctor_id", "id врача", "код врача"),
    "doctor_name": ("doctor_name", "врач"),
    "specialty": ("specialty", "специальность"),
    "visit_date": ("visit_date", "дата", "дата визита", "дата приема"),
    "start_time": ("start_time", "начало", "время начала", "время"),
    "end_time": ("end_time", "окончание", "время окончания", "конец"),
    "status": ("status", "статус"),
    "is_primary": ("is_primary", "первичный", "первичный прием"),
    "services": ("services", "услуги"),
    "amount": ("amount", "сумма"),
    "paid": ("paid", "оплачено"),
    "created_at": ("created_at", "создан", "дата создания"),
    "updated_at": ("updated_at", "изменен", "обновлен", "дата изменения"),
    "comment": ("comment", "комментарий"),
    "source": ("source", "источник"),
    "booked_by": ("booked_by", "записал", "администратор"),
    "waiting_list": ("waiting_list", "лист ожидания"),
}
REQUIRED = ("visit_id", "patient_full_name", "phone", "visit_date", "start_time", "status")

STATUSES = {
    "записан": "booked",
    "подтвержден": "confirmed",
    "пришел": "arrived",
    "завершен": "completed",
    "отменен": "cancelled",
    "неявка": "no_show",
}
_YES = {"да", "1", "true", "yes", "+", "истина"}
_NO = {"нет", "0", "false", "no", "-", "ложь"}
_PERIOD_LINE = re.compile(r"^\W*(?:period|период)\b", re.I)
_DATE = re.compile(r"\d{1,4}[.-]\d{1,2}[.-]\d{2,4}")


class HelixFileError(ValueError):
    def __init__(self, reason: str, field: str = "file") -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def _fold(text: str) -> str:
    return " ".join(text.replace("\ufeff", "").strip().lower().replace("ё", "е").split())


_HEADER = {_fold(alias): column for column, aliases in ALIASES.items() for alias in aliases}


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in ("%d.%m.%Y", "%Y-%m-%d", "%d.%m.%y"):
        try:
            return datetime.strptime(text, fmt).date()  # noqa: DTZ007 — a calendar date, no time of day
        except ValueError:
            continue
    raise ValueError("not a date (ДД.ММ.ГГГГ or YYYY-MM-DD)")


def _time(value: Any) -> time:
    if isinstance(value, datetime):
        return value.time()
    if isinstance(value, time):
        return value
    text = str(value).strip()
    for fmt in ("%H:%M", "%H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).time()  # noqa: DTZ007 — a wall-clock time of day
        except ValueError:
            continue
    raise ValueError("not a time (ЧЧ:ММ)")


def _moment(value: Any, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            try:
                moment = datetime.strptime(text, "%d.%m.%Y %H:%M:%S")  # noqa: DTZ007 — localised below
            except ValueError:
                moment = datetime.strptime(text, "%d.%m.%Y %H:%M")  # noqa: DTZ007 — localised below
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    folded = _fold(str(value))
    if folded == "":
        return None
    if folded in _YES:
        return True
    if folded in _NO:
        return False
    raise ValueError("not yes/no (да/нет)")


def _minor(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int | Decimal):
        amount = Decimal(value)
    elif isinstance(value, float):
        # openpyxl gives floats for currency cells; two decimals is what the cell showed.
        amount = Decimal(repr(value))
    else:
        text = str(value).strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
        if text == "":
            return None
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ValueError("not a decimal amount") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise ValueError("not a decimal amount")
    return int(amount * 100)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class _Bad(Exception):
    def __init__(self, field: str, reason: str, value: Any) -> None:
        super().__init__(reason)
        self.field, self.reason, self.value = field, reason, "" if value is None else str(value)


def _visit(row: Mapping[str, Any], tz: tzinfo) -> Appointment:
    def need(column: str) -> Any:
        value = row.get(column)
        if value is None or (isinstance(value, str) and value.strip() == ""):
            raise _Bad(column, "required", value)
        return value

    def parse(column: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(row.get(column), *args)
        except (TypeError, ValueError) as exc:
            raise _Bad(column, str(exc), row.get(column)) from None

    visit_id = str(need("visit_id")).strip()
    name = str(need("patient_full_name")).strip()
    phone = str(need("phone")).strip()
    day = parse("visit_date", lambda v: _date(need("visit_date")))
    start = parse("start_time", lambda v: _time(need("start_time")))
    raw_status = need("status")
    status = STATUSES.get(_fold(str(raw_status)))
    if status is None:
        raise _Bad("status", "unknown status", raw_status)
    starts_at = datetime.combine(day, start, tzinfo=tz)
    ends_at = None
    if _text(row.get("end_time")) is not None or isinstance(row.get("end_time"), time | datetime):
        ends_at = datetime.combine(day, parse("end_time", _time), tzinfo=tz)
        if ends_at < starts_at:
            raise _Bad("end_time", "ends before it starts", row.get("end_time"))
    changed_at = None
    if row.get("updated_at") not in (None, ""):
        changed_at = parse("updated_at", _moment, tz)
    if row.get("birth_date") not in (None, ""):
        parse("birth_date", _date)
    return Appointment(
        source=SOURCE,
        source_id=visit_id,
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        patient_id=_text(row.get("patient_id")),
        patient_name=name,
        patient_phone=phone,
        changed_at=changed_at,
        doctor_id=_text(row.get("doctor_id")),
        doctor_name=_text(row.get("doctor_name")),
        specialty=_text(row.get("specialty")),
        branch=_text(row.get("branch")),
        card_number=_text(row.get("card_number")),
        booked_by=_text(row.get("booked_by")),
        waiting_list=bool(parse("waiting_list", _flag)),
        mis_primary=parse("is_primary", _flag),
        amount_minor=parse("amount", _minor),
        channel=_text(row.get("source")),
        comment=_text(row.get("comment")),
    )


def _canonical(headers: Iterable[Any]) -> list[str | None]:
    columns = [_HEADER.get(_fold(str(h))) if h is not None else None for h in headers]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise HelixFileError(f"required column missing: {missing[0]}", missing[0])
    return columns


def _period(first: str, second: str) -> tuple[date, date]:
    try:
        period = (_date(first), _date(second))
    except ValueError as exc:
        raise HelixFileError(f"period line: {exc}", "period") from None
    if period[1] < period[0]:
        raise HelixFileError("period ends before it starts", "period")
    return period


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1251")


def _csv_rows(text: str) -> tuple[list[dict[str, Any]], tuple[date, date] | None]:
    lines = text.splitlines()
    period = None
    if lines and _PERIOD_LINE.match(lines[0].lstrip("\ufeff")):
        found = _DATE.findall(lines[0])
        if len(found) != 2:
            raise HelixFileError("period line needs two dates", "period")
        period = _period(found[0], found[1])
        lines = lines[1:]
    if not lines:
        raise HelixFileError("no header line")
    reader = csv.reader(lines, delimiter=";")
    try:
        header = next(reader)
        columns = _canonical(header)
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            rows.append({c: v for c, v in zip(columns, values, strict=False) if c is not None})
    except csv.Error as exc:
        raise HelixFileError(f"not a readable CSV file: {exc}") from None
    return rows, period


def _json_rows(text: str) -> tuple[list[dict[str, Any]], tuple[date, date] | None]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HelixFileError(f"not valid JSON: {exc.msg}") from None
    period = None
    if isinstance(doc, dict):
        if isinstance(doc.get("period"), dict):
            period = _period(str(doc["period"].get("from")), str(doc["period"].get("to")))
        doc = doc.get("visits")
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise HelixFileError("a JSON export is an array of visit objects, or {period, visits}")
    headers: list[str] = []
    for r in doc:
        headers.extend(k for k in r if k not in headers)
    columns = dict(zip(headers, _canonical(headers), strict=True))
    return [{columns[k]: v for k, v in r.items() if columns[k] is not None} for r in doc], period


def _xlsx_rows(data: bytes) -> tuple[list[dict[str, Any]], tuple[date, date] | None]:
    from openpyxl import load_workbook  # only XLSX needs it, and it is slow to import

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises a zoo of types for a broken archive
        raise HelixFileError(f"not a readable XLSX file: {type(exc).__name__}") from None
    sheet = book.worksheets[0]
    values: Iterator[tuple[Any, ...]] = sheet.iter_rows(values_only=True)
    period = None
    first = next(values, None)
    if first and first[0] is not None and _fold(str(first[0])).strip("#: ") in ("period", "период"):
        period = _period(first[1], first[2])
        first = next(values, None)
    if first is None:
        raise HelixFileError("no header row")
    columns = _canonical(first)
    rows = []
    for cells in values:
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            continue
        rows.append({c: v for c, v in zip(columns, cells, strict=False) if c is not None})
    book.close()
    return rows, period


def read_rows(data: bytes, *, filename: str = "") -> tuple[list[dict[str, Any]], tuple[date, date] | None]:
    """The file's rows by canonical column (values unparsed) and its declared period. Raises `HelixFileError`
    when the file as a whole cannot be read (format, encoding, a required column missing): cheap next to the
    import, so an upload can be refused before it is stored."""
    if data.startswith(b"PK\x03\x04") or filename.lower().endswith(".xlsx"):
        return _xlsx_rows(data)
    try:
        text = _decode(data)
    except UnicodeDecodeError:
        raise HelixFileError("neither UTF-8 nor cp1251 text") from None
    if text.lstrip().startswith(("{", "[")):
        return _json_rows(text)
    return _csv_rows(text)


def parse_export(data: bytes, *, tz: tzinfo, filename: str = "") -> AppointmentBatch:
    """The whole file → appointments + rejects (+ the declared period). Raises `HelixFileError`."""
    rows, period = read_rows(data, filename=filename)
    parsed: list[tuple[int, Appointment]] = []
    rejects: list[AppointmentReject] = []
    for number, row in enumerate(rows, start=1):
        try:
            parsed.append((number, _visit(row, tz)))
        except _Bad as bad:
            visit_id = _text(row.get("visit_id"))
            rejects.append(AppointmentReject(number, bad.field, bad.reason, bad.value, visit_id))
    # One visit twice: identical copies collapse; differing copies cannot be ordered, so all are refused.
    by_id: dict[str, list[tuple[int, Appointment]]] = {}
    for number, visit in parsed:
        by_id.setdefault(visit.source_id, []).append((number, visit))
    appointments: list[Appointment] = []
    for copies in by_id.values():
        if len({visit for _, visit in copies}) == 1:
            appointments.append(copies[0][1])
            continue
        rejects.extend(
            AppointmentReject(
                number,
                "visit_id",
                "same visit twice with different content",
                visit.source_id,
                visit.source_id,
            )
            for number, visit in copies
        )
    rejects.sort(key=lambda r: r.row)
    return AppointmentBatch(tuple(appointments), tuple(rejects), None, period)


class HelixFileReader:
    """`AppointmentSource` over one export file: a file is read whole, so there is no cursor."""

    def __init__(self, data: bytes, *, tz: tzinfo, filename: str = "") -> None:
        self._batch = parse_export(data, tz=tz, filename=filename)

    def fetch(self, cursor: str | None) -> AppointmentBatch:
        return self._batch

    def iter_all(self, cursor: str | None) -> Iterator[AppointmentBatch]:
        yield self._batch
