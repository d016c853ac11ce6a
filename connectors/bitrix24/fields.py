"""Deal custom fields (`UF_CRM_…`) between our `FieldValue`s and `crm.item.*` with `useOriginalUfNames=Y`.

Types as `crm.item.fields` reports them (research/bitrix24.md §5): string, integer, double, boolean
(``Y``/``N``), date (``YYYY-MM-DD``; the platform may append a time), enumeration (item ``ID``s; a list
when `isMultiple`). A float is refused: money is integer minor units, never rounded somewhere here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import phonenumbers

from ..errors import Rejected
from ..phones import e164 as to_e164
from ..types import FieldValue

__all__ = ["FieldDef", "decode_value", "encode_value", "normalize_phone", "parse_field_defs"]


@dataclass(frozen=True)
class FieldDef:
    key: str
    type: str
    multiple: bool
    options: tuple[str, ...] = ()


def parse_field_defs(result: Mapping[str, Any]) -> dict[str, FieldDef]:
    out: dict[str, FieldDef] = {}
    for key, spec in (result.get("fields") or {}).items():
        if not isinstance(spec, Mapping):
            continue
        options = tuple(str(i.get("ID")) for i in spec.get("items") or () if isinstance(i, Mapping))
        out[str(key)] = FieldDef(
            str(key), str(spec.get("type") or "string"), bool(spec.get("isMultiple")), options
        )
    return out


def _bad(path: str, why: str) -> Rejected:
    return Rejected(f"{path}: {why}", status=422, code="invalid", path=path)


def encode_value(field: FieldDef, value: FieldValue, path: str) -> Any:
    if value is None:
        return [] if field.multiple else ""
    kind = field.type
    if isinstance(value, float):
        raise _bad(path, f"floats are not accepted (got {value!r}); send integers")
    if kind == "enumeration":
        values = value if isinstance(value, tuple) else (value,)
        if not field.multiple and len(values) > 1:
            raise _bad(path, "takes one option")
        for v in values:
            if str(v) not in field.options:
                raise _bad(path, f"unknown option {v!r}")
        ids = [str(v) for v in values]
        return ids if field.multiple else ids[0]
    if isinstance(value, tuple):
        raise _bad(path, "takes a single value")
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _bad(path, f"a boolean is required (got {value!r})")
        return "Y" if value else "N"
    if kind in ("integer", "double"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(path, f"an integer is required (got {value!r})")
        return value
    if kind == "date":
        if isinstance(value, datetime) or not isinstance(value, date):
            raise _bad(path, f"a date is required (got {value!r})")
        return value.isoformat()
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise _bad(path, f"text is required (got {value!r})")
    return str(value)


def decode_value(field: FieldDef | None, raw: Any) -> FieldValue:
    if raw is None or raw == "" or raw == []:
        return None
    kind = field.type if field else "string"
    if field is not None and field.multiple:
        items = raw if isinstance(raw, list) else [raw]
        return tuple(str(v) for v in items if v not in (None, ""))
    if kind == "boolean":
        return raw in (True, "Y", "1", 1)
    if kind in ("integer", "double"):
        number = Decimal(str(raw))
        return int(number) if number == number.to_integral_value() else str(number)
    if kind == "date":
        return date.fromisoformat(str(raw)[:10])
    if kind == "enumeration":
        return str(raw)
    return str(raw)


def normalize_phone(raw: str, region: str = "RU") -> str | None:
    """E.164 of a phone as typed into the CRM ("8 (916) 123-45-67" → "+79161234567"); None if invalid."""
    return to_e164(raw, region)


def phone_forms(e164: str) -> list[str]:
    """The ways a number is stored that `crm.duplicate.findbycomm` should be asked about (≤ 20)."""
    parsed = phonenumbers.parse(e164)
    national = str(parsed.national_number)
    forms = [e164, e164.lstrip("+"), national]
    if parsed.country_code == 7:
        forms.append("8" + national)
    return list(dict.fromkeys(forms))
