"""Custom-field values between `FieldValue` and amoCRM's `custom_fields_values` (research §5.2).

Reading needs no schema: every value in a v4 entity carries its `field_type`. Writing does, because the
Python type alone cannot tell a multiselect from a multitext, so the client loads the field definitions
(`GET /api/v4/leads/custom_fields`) once and encodes by type:

- text-like → ``{"value": str}``; numeric/monetary → ``{"value": int}``, or the exact text of a decimal
  string ("1234.56"), never a float (a float is a bug upstream);
- checkbox → ``{"value": bool}``; date/birthday/date_time → ``{"value": unix ts}`` of local midnight in
  the portal's timezone, read back as that `date`;
- select/radiobutton/multiselect → ``[{"enum_id": int}, …]``, exchanged as a tuple of enum ids (strings);
- multitext (PHONE, EMAIL) → one value per item;
- None → ``"values": null``, which clears the field. A field sent replaces all its values.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

from ..arguments import invalid as _invalid
from ..types import FieldValue

__all__ = [
    "ENUM_TYPES",
    "FieldDef",
    "FieldDefsCache",
    "decode_fields",
    "decode_value",
    "encode_value",
    "parse_field_defs",
]

ENUM_TYPES = frozenset({"select", "multiselect", "radiobutton", "category"})
NUMBER_TYPES = frozenset({"numeric", "monetary", "price"})
DATE_TYPES = frozenset({"date", "birthday", "date_time"})
MULTI_TYPES = frozenset({"multitext"})


class FieldDefsCache:
    """Lead field definitions per account host for `ttl_s`, shared by the clients one process builds.

    Every outbox wake-up builds a fresh client; without this each one spends a request of the 7/s budget
    re-reading definitions that change a few times a year. A client that meets a field or option the
    cached copy lacks re-reads them once before refusing (a field created a minute ago is not an error).
    """

    def __init__(self, ttl_s: float = 300.0, clock: Callable[[], float] = monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, dict[str, FieldDef]]] = {}

    def get(self, host: str) -> dict[str, FieldDef] | None:
        with self._lock:
            item = self._items.get(host)
            if item is None or item[0] <= self._clock():
                self._items.pop(host, None)
                return None
            return item[1]

    def put(self, host: str, defs: dict[str, FieldDef]) -> None:
        with self._lock:
            self._items[host] = (self._clock() + self.ttl_s, defs)


@dataclass(frozen=True)
class FieldDef:
    id: str
    code: str | None
    type: str
    enums: frozenset[str] = frozenset()


def parse_field_defs(items: list[Mapping[str, Any]]) -> dict[str, FieldDef]:
    defs: dict[str, FieldDef] = {}
    for item in items:
        enums = frozenset(str(e["id"]) for e in item.get("enums") or () if "id" in e)
        fid = str(item["id"])
        defs[fid] = FieldDef(id=fid, code=item.get("code"), type=str(item.get("type")), enums=enums)
    return defs


def _to_date(raw: Any, tz: ZoneInfo) -> date | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float) or (isinstance(raw, str) and raw.strip().lstrip("-").isdigit()):
        return datetime.fromtimestamp(int(raw), tz).date()
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return None
        return (parsed.astimezone(tz) if parsed.tzinfo else parsed).date()
    return None


_DECIMAL_TEXT = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")


def _number(value: FieldValue, kind: str, path: str) -> int | str:
    """An int, or a decimal string such as the ledger's "35000.00" (money never passes through a float).

    A whole amount goes as an int, which every numeric field takes; a fraction goes as its exact text,
    which monetary fields keep and which amo otherwise refuses with a validation error naming the field,
    rather than our rounding it silently."""
    if isinstance(value, bool):
        raise _invalid(path, f"a {kind} field takes an int or a decimal string, got {value!r}")
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not _DECIMAL_TEXT.match(value.strip()):
        raise _invalid(path, f"a {kind} field takes an int or a decimal string, got {value!r}")
    number = Decimal(value.strip())
    return int(number) if number == number.to_integral_value() else format(number.normalize(), "f")


def _to_int(raw: Any) -> FieldValue:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    try:
        return int(text)
    except ValueError:
        # A fractional amount stays text: rounding it here would hide real data.
        return text


def decode_value(item: Mapping[str, Any], tz: ZoneInfo) -> FieldValue:
    values = item.get("values") or []
    if not values:
        return None
    kind = item.get("field_type")
    if kind in ENUM_TYPES:
        return tuple(str(v["enum_id"]) for v in values if v.get("enum_id") is not None)
    first = values[0].get("value")
    if kind == "checkbox":
        return first is True or (isinstance(first, str) and first.lower() in {"1", "true"})
    if kind in NUMBER_TYPES:
        return _to_int(first)
    if kind in DATE_TYPES:
        return _to_date(first, tz)
    if kind in MULTI_TYPES:
        return tuple(str(v.get("value")) for v in values)
    return None if first is None else str(first)


def decode_fields(
    items: list[Mapping[str, Any]] | None, tz: ZoneInfo, aliases: Mapping[str, str]
) -> dict[str, FieldValue]:
    """Values keyed by field id, plus any alias the caller configured for that id."""
    by_id = {str(item["field_id"]): decode_value(item, tz) for item in items or () if "field_id" in item}
    out: dict[str, FieldValue] = dict(by_id)
    for alias, target in aliases.items():
        if target in by_id:
            out[alias] = by_id[target]
    return out


def encode_value(field: FieldDef, value: FieldValue, tz: ZoneInfo, path: str) -> dict[str, Any]:
    """One `custom_fields_values` item; `Rejected` (422, naming `path`) for a value the type can't take."""
    if value is None:
        return {"field_id": int(field.id), "values": None}
    kind = field.type
    if isinstance(value, float) or isinstance(value, datetime):
        raise _invalid(path, f"unsupported value {value!r} for a {kind} field")
    if kind in ENUM_TYPES:
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise _invalid(path, f"a {kind} field takes a tuple of enum ids, got {value!r}")
        unknown = [v for v in value if v not in field.enums]
        if unknown:
            raise _invalid(path, f"unknown enum id(s) {unknown} for field {field.id}")
        if kind != "multiselect" and len(value) > 1:
            raise _invalid(path, f"a {kind} field takes one option, got {len(value)}")
        if not value:
            return {"field_id": int(field.id), "values": None}
        return {"field_id": int(field.id), "values": [{"enum_id": int(v)} for v in value]}
    if kind == "checkbox":
        if not isinstance(value, bool):
            raise _invalid(path, f"a checkbox takes a bool, got {value!r}")
        return {"field_id": int(field.id), "values": [{"value": value}]}
    if kind in NUMBER_TYPES:
        return {"field_id": int(field.id), "values": [{"value": _number(value, kind, path)}]}
    if kind in DATE_TYPES:
        if not isinstance(value, date):
            raise _invalid(path, f"a {kind} field takes a date, got {value!r}")
        stamp = int(datetime.combine(value, time(0, 0), tz).timestamp())
        return {"field_id": int(field.id), "values": [{"value": stamp}]}
    if kind in MULTI_TYPES:
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise _invalid(path, f"a multitext field takes a tuple of str, got {value!r}")
        return {"field_id": int(field.id), "values": [{"value": v, "enum_code": "WORK"} for v in value]}
    if not isinstance(value, str):
        raise _invalid(path, f"a {kind} field takes a str, got {value!r}")
    return {"field_id": int(field.id), "values": [{"value": value}]}
