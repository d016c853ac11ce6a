"""The two ways we read IDENT receptions: straight from the clinic's database (one read-only query over
`view.sql`) or from an export of the same columns. Both map rows with `rows.map_reception_row`.

The cursor is the newest `DateTimeChanged` seen (ISO 8601 with offset). A fetch re-reads from five minutes
before it, because IDENT stamps a change when its transaction starts and a longer transaction can commit a
row older than one already read; the sync engine's upsert makes the overlap harmless.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from ..types import Appointment, AppointmentBatch, AppointmentReject
from .rows import COLUMNS, map_reception_row

__all__ = ["OVERLAP", "IdentDbReader", "IdentExportError", "IdentExportReader", "map_rows"]

OVERLAP = timedelta(minutes=5)

QUERY = (
    f"SELECT {', '.join(COLUMNS)} FROM cb_receptions "  # noqa: S608 — fixed column list, no user input
    "WHERE DateTimeChanged >= ? ORDER BY DateTimeChanged, ID"
)
QUERY_ALL = f"SELECT {', '.join(COLUMNS)} FROM cb_receptions ORDER BY DateTimeChanged, ID"  # noqa: S608
QUERY_BACKFILL = (
    f"SELECT {', '.join(COLUMNS)} FROM cb_receptions "  # noqa: S608 — fixed column list, no user input
    "WHERE PlanStart >= ? ORDER BY DateTimeChanged, ID"
)
QUERY_WINDOW = (
    f"SELECT {', '.join(COLUMNS)} FROM cb_receptions "  # noqa: S608 — fixed column list, no user input
    "WHERE PlanStart >= ? AND PlanStart < ? ORDER BY PlanStart, ID"
)


class IdentExportError(ValueError):
    """The export cannot be read at all (not CSV/JSON, or a required column is missing)."""


def map_rows(
    rows: Iterable[Mapping[str, Any]], *, tz: tzinfo, no_show_reasons: Collection[str], cursor: str | None
) -> AppointmentBatch:
    appointments: list[Appointment] = []
    rejects: list[AppointmentReject] = []
    newest = cursor
    for number, row in enumerate(rows, start=1):
        mapped = map_reception_row(row, row_number=number, tz=tz, no_show_reasons=no_show_reasons)
        if isinstance(mapped, AppointmentReject):
            rejects.append(mapped)
            continue
        appointments.append(mapped)
        if mapped.changed_at is not None:
            seen = mapped.changed_at.isoformat()
            if newest is None or datetime.fromisoformat(newest) < mapped.changed_at:
                newest = seen
    return AppointmentBatch(tuple(appointments), tuple(rejects), newest)


class IdentDbReader:
    """`connect` returns a DB-API connection (pyodbc in production, extra `ident-db`). Dates go to the
    driver as naive clinic-local values, as IDENT stores them. The first read (no cursor) goes back to
    `backfill_from` only: enough history for primary vs repeat, not a clinic's whole archive."""

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        tz: tzinfo,
        no_show_reasons: Collection[str] = (),
        backfill_from: date | None = None,
    ) -> None:
        self._connect = connect
        self._tz = tz
        self._no_show = frozenset(no_show_reasons)
        self._backfill_from = backfill_from

    def _rows(self, cursor: str | None) -> list[dict[str, Any]]:
        conn = self._connect()
        try:
            cur = conn.cursor()
            if cursor is None and self._backfill_from is not None:
                cur.execute(QUERY_BACKFILL, (self._backfill_from.isoformat(),))
            elif cursor is None:
                cur.execute(QUERY_ALL)
            else:
                since = datetime.fromisoformat(cursor).astimezone(self._tz).replace(tzinfo=None) - OVERLAP
                cur.execute(QUERY, (since.isoformat(sep=" "),))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, values, strict=True)) for values in cur.fetchall()]
        finally:
            conn.close()

    def fetch(self, cursor: str | None) -> AppointmentBatch:
        return map_rows(self._rows(cursor), tz=self._tz, no_show_reasons=self._no_show, cursor=cursor)

    def fetch_window(self, first: date, last: date) -> AppointmentBatch:
        """Every reception planned on the days first…last, as an authoritative batch: a visit of those days
        that is no longer there was deleted in IDENT (the daily reconciliation voids it)."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(QUERY_WINDOW, (first.isoformat(), (last + timedelta(days=1)).isoformat()))
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, values, strict=True)) for values in cur.fetchall()]
        finally:
            conn.close()
        batch = map_rows(rows, tz=self._tz, no_show_reasons=self._no_show, cursor=None)
        return AppointmentBatch(batch.appointments, batch.rejects, None, (first, last))

    def iter_all(self, cursor: str | None) -> Iterator[AppointmentBatch]:
        yield self.fetch(cursor)


class IdentExportReader:
    """The same view's columns exported to CSV (`;` or `,`, UTF-8 with or without BOM, or cp1251) or to a
    JSON array of objects: for clinics that will not open their database to us."""

    def __init__(self, data: bytes, *, tz: tzinfo, no_show_reasons: Collection[str] = ()) -> None:
        self._rows = _read_export(data)
        self._tz = tz
        self._no_show = frozenset(no_show_reasons)

    def fetch(self, cursor: str | None) -> AppointmentBatch:
        since = None if cursor is None else datetime.fromisoformat(cursor) - OVERLAP
        rows = self._rows
        if since is not None:
            rows = [r for r in rows if _changed(r, self._tz) is None or _changed(r, self._tz) >= since]
        return map_rows(rows, tz=self._tz, no_show_reasons=self._no_show, cursor=cursor)

    def iter_all(self, cursor: str | None) -> Iterator[AppointmentBatch]:
        yield self.fetch(cursor)


def _changed(row: Mapping[str, Any], tz: tzinfo) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(row.get("DateTimeChanged") or "").strip())
    except ValueError:
        return None  # the mapper reports it
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1251")


def _read_export(data: bytes) -> list[dict[str, Any]]:
    text = _decode(data).strip()
    if text.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IdentExportError(f"not valid JSON: {exc.msg}") from exc
        if not all(isinstance(r, dict) for r in rows):
            raise IdentExportError("a JSON export is an array of objects")
        headers = set().union(*(r.keys() for r in rows)) if rows else set(COLUMNS)
    else:
        first = text.split("\n", 1)[0]
        delimiter = ";" if first.count(";") >= first.count(",") else ","
        reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
        rows = list(reader)
        headers = set(reader.fieldnames or ())
    missing = [c for c in ("ID", "DateTimeChanged", "PlanStart", "ID_Patients") if c not in headers]
    if missing:
        raise IdentExportError(f"required column missing: {missing[0]}")
    return rows
