"""PHP-style bracket forms, both ways (research/bitrix24.md Facts 10, §6).

Bitrix24 posts events, robots and install callbacks as ``application/x-www-form-urlencoded`` with nested
keys written as brackets (``auth[member_id]``, ``data[FIELDS][ID]``, ``document_id[2]``), and batch
commands are query strings in the same notation (``fields[UF_CRM_X]=1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

__all__ = ["FormError", "build_query", "nest"]

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
MAX_DEPTH = 6


class FormError(ValueError):
    """A body that is not a well-formed bracket form; `field` names the offending key."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def nest(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``[("a[b][]", "1"), ("a[b][]", "2")]`` → ``{"a": {"b": ["1", "2"]}}``.

    Numeric keys stay dict keys (``document_id`` → ``{"0": …, "2": …}``): the platform's indexes are
    names, not positions. A key used both as a value and as a container is a malformed body.
    """
    out: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.match(raw_key)
        if not match:
            raise FormError(raw_key, "not a bracket key")
        parts = [match.group(1), *_PART.findall(match.group(2))]
        if len(parts) > MAX_DEPTH:
            raise FormError(raw_key, f"nested deeper than {MAX_DEPTH}")
        node: dict[str, Any] = out
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            child = node.get(part)
            if child is None:
                child = [] if nxt == "" else {}
                node[part] = child
            if nxt == "":
                if not isinstance(child, list) or i + 1 != len(parts) - 1:
                    raise FormError(raw_key, "mixes a list with other keys")
                child.append(value)
                break
            if not isinstance(child, dict):
                raise FormError(raw_key, "used both as a value and as a group")
            node = child
        else:
            last = parts[-1]
            if last == "" or isinstance(node.get(last), dict | list):
                raise FormError(raw_key, "used both as a value and as a group")
            node[last] = value
    return out


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        if not value:
            out.append((prefix, ""))
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]", item, out)
    elif isinstance(value, list | tuple):
        if not value:
            # An empty list must still clear the field; PHP reads `x=` as an empty value.
            out.append((prefix, ""))
        for i, item in enumerate(value):
            _flatten(f"{prefix}[{i}]", item, out)
    elif value is None:
        out.append((prefix, ""))
    elif isinstance(value, bool):
        out.append((prefix, "Y" if value else "N"))
    else:
        out.append((prefix, str(value)))


def build_query(params: Mapping[str, Any]) -> str:
    """PHP's http_build_query: a batch command's parameters (`method?<this>`)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        _flatten(str(key), value, pairs)
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs)
