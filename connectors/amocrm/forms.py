"""amoCRM's form-urlencoded bodies with PHP-style bracket keys, turned into nested dicts and lists.

Account webhooks (research/amocrm.md §4.2) and, per one reading, Digital Pipeline hooks (§3) arrive as
``leads[status][0][id]=15318175&account[id]=1312313``. PHP would build arrays from that; we build the
same tree in Python, strictly: amo always sends explicit, gap-free indices, so anything else is a body we
did not get from amo and is refused with the offending key named.

All values stay strings, as amo sends them ("All values are strings", §4.2); typing is the schemas' job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote

from connectors.errors import AnomalousPayload

__all__ = ["MAX_DEPTH", "MAX_FIELDS", "FormError", "encode_form", "flatten_form", "parse_form", "split_key"]

MAX_FIELDS = 5000
"""A lead status hook with 40 custom fields has about 200 pairs; far more is abuse, not a CRM."""

MAX_DEPTH = 8
"""The deepest amo key is contacts[add][0][custom_fields][0][values][0][value]: seven levels."""

_KEY = re.compile(r"(?P<name>[^\[\]]+)(?P<rest>(?:\[[^\[\]]*\])*)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
# "01" is a string key to PHP, not an index; treating it as one would silently reorder a list.
_INDEX = re.compile(r"0|[1-9][0-9]{0,5}")


class FormError(AnomalousPayload):
    """The body or one of its keys is not what amo sends. `key` names the offending key (or "body")."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def split_key(key: str) -> tuple[str, ...]:
    """``leads[status][0][id]`` → ``("leads", "status", "0", "id")``; refuses anything else."""
    if key == "":
        raise FormError("body", "a pair with an empty key")
    # fullmatch, not match with $: "$" also matches before a final newline, which would drop it.
    match = _KEY.fullmatch(key)
    if match is None:
        raise FormError(key, "malformed key (unbalanced or misplaced brackets)")
    segments = (match["name"], *_SEGMENT.findall(match["rest"]))
    if any(segment == "" for segment in segments):
        # PHP's "append" form a[]; amo numbers every element, so an empty index is not from amo.
        raise FormError(key, "empty index [] (amo numbers list elements)")
    if len(segments) > MAX_DEPTH:
        raise FormError(key, f"nested deeper than {MAX_DEPTH} levels")
    return segments


def parse_form(raw_body: str) -> dict[str, Any]:
    """Parse a form-urlencoded body into nested dicts and lists of strings.

    A level whose keys are all indices (0, 1, 2, …, without gaps) becomes a list in index order; a level
    whose keys are all names becomes a dict. Duplicate keys, a key that is both a value and a container,
    mixed indices and names, gaps and malformed brackets raise `FormError` naming the key.
    """
    try:
        pairs = parse_qsl(
            raw_body,
            keep_blank_values=True,
            strict_parsing=bool(raw_body),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise FormError("body", "percent-encoded bytes are not UTF-8") from None
    except ValueError as exc:
        # parse_qsl says "bad query field: 'x'" or "Max number of fields exceeded".
        raise FormError("body", f"not form-urlencoded ({exc})") from None
    root: dict[str, Any] = {}
    for key, value in pairs:
        _insert(root, key, split_key(key), value)
    return _freeze(root, "")


def _insert(root: dict[str, Any], key: str, segments: Sequence[str], value: str) -> None:
    node = root
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        existing = node.get(segment)
        if last:
            if existing is not None:
                reason = "duplicate key" if isinstance(existing, str) else "is both a value and a container"
                raise FormError(key, reason)
            node[segment] = value
            return
        if existing is None:
            existing = node[segment] = {}
        elif isinstance(existing, str):
            raise FormError(key, "is both a value and a container")
        node = existing


def _freeze(node: dict[str, Any], prefix: str) -> Any:
    """Turn the all-dicts build tree into dicts and lists, checking each level is one or the other."""
    names = list(node)
    indices = [name for name in names if _INDEX.fullmatch(name)]
    if indices and len(indices) != len(names):
        first = next(name for name in names if not _INDEX.fullmatch(name))
        raise FormError(_join(prefix, first), "list indices and names mixed at one level")

    def child(name: str) -> Any:
        value = node[name]
        return value if isinstance(value, str) else _freeze(value, _join(prefix, name))

    if prefix and indices:
        order = sorted(int(name) for name in indices)
        if order != list(range(len(order))):
            missing = next(i for i, n in enumerate(order) if i != n)
            raise FormError(_join(prefix, str(missing)), "missing list index (gap)")
        return [child(str(i)) for i in order]
    if not prefix and indices:
        raise FormError(indices[0], "a top-level name cannot be a list index")
    return {name: child(name) for name in names}


def _join(prefix: str, segment: str) -> str:
    return f"{prefix}[{segment}]" if prefix else segment


def flatten_form(tree: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The inverse of `parse_form`: bracket keys and string values, lists numbered from 0."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, node: Any) -> None:
        items: Iterable[tuple[str, Any]]
        if isinstance(node, Mapping):
            items = ((str(k), v) for k, v in node.items())
        elif isinstance(node, list | tuple):
            items = ((str(i), v) for i, v in enumerate(node))
        else:
            pairs.append((prefix, str(node)))
            return
        for name, value in items:
            walk(_join(prefix, name), value)

    walk("", tree)
    return pairs


def encode_form(tree: Mapping[str, Any]) -> str:
    """Encode a tree the way amo's PHP does (brackets percent-encoded) so that `parse_form` reads it back."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in flatten_form(tree))
