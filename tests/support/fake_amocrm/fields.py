"""Custom-field values as amo validates and stores them (§5.2)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._base import _ENUM, _Invalid, _validation


class CustomFieldsMixin:
    # --- custom fields ----------------------------------------------------------------------------------

    def _cf(
        self,
        defs: Mapping[int, Mapping[str, Any]],
        current: list[dict[str, Any]] | None,
        changes: list[Mapping[str, Any]] | None,
        rid: str,
    ) -> list[dict[str, Any]] | None:
        out = {item["field_id"]: item for item in current or []}
        for i, change in enumerate(changes or []):
            path = f"custom_fields_values.{i}"
            fdef = (
                defs.get(change.get("field_id"))
                if "field_id" in change
                else next((d for d in defs.values() if d.get("code") == change.get("field_code")), None)
            )
            if fdef is None:
                raise _Invalid(_validation(rid, "NotSupportedChoice", f"{path}.field_id"))
            values = change.get("values")
            if not values:
                out.pop(fdef["id"], None)
                continue
            out[fdef["id"]] = {
                "field_id": fdef["id"],
                "field_name": fdef["name"],
                "field_code": fdef.get("code"),
                "field_type": fdef["type"],
                "values": [self._value(fdef, v, f"{path}.values.{j}", rid) for j, v in enumerate(values)],
            }
        return list(out.values()) or None

    def _value(self, fdef: Mapping[str, Any], v: Mapping[str, Any], path: str, rid: str) -> dict[str, Any]:
        kind, value = fdef["type"], v.get("value")
        enums = {e["id"]: e["value"] for e in fdef.get("enums") or []}
        bad = _Invalid(_validation(rid, "InvalidType", f"{path}.value"))
        if kind in _ENUM:
            eid = v.get("enum_id")
            if eid not in enums:
                eid = next((k for k, t in enums.items() if t == value), None)
            if eid is None:
                raise _Invalid(_validation(rid, "NotSupportedChoice", f"{path}.enum_id"))
            return {"value": enums[eid], "enum_id": eid, "enum_code": None}
        if kind == "checkbox":
            if not isinstance(value, bool):
                raise bad
            return {"value": value}
        if kind == "numeric":
            if isinstance(value, bool) or not re.fullmatch(r"-?\d+(\.\d+)?", str(value)):
                raise bad
            return {"value": str(value)}
        if kind == "date":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad
            return {"value": value}
        if not isinstance(value, str):
            raise bad
        if kind == "multitext":
            code = v.get("enum_code") or "WORK"
            eid = next((k for k, t in enums.items() if t == code), None)
            return {"value": value, "enum_id": eid, "enum_code": code}
        return {"value": value}
