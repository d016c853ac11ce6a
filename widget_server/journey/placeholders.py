"""Message placeholders: `{{ФИО}}`, `{{Бренд}}`, `{{тел. номер}}`, `{{дата}}`, `{{время}}`, `{{врач}}`,
`{{ссылки}}` (review sites), `{{цена}}` (the hygiene price), `{{план}}` (the treatment plan link)."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["PLACEHOLDERS", "render", "unknown_placeholders"]

PLACEHOLDERS = ("ФИО", "Бренд", "тел. номер", "дата", "время", "врач", "ссылки", "цена", "план")
_PATTERN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def unknown_placeholders(text: str) -> list[str]:
    return [name for name in _PATTERN.findall(text) if name not in PLACEHOLDERS]


def render(text: str, values: Mapping[str, str]) -> str:
    """A missing value renders empty rather than as braces the patient would see."""
    return _PATTERN.sub(lambda m: values.get(m.group(1), ""), text)
