"""What makes two MIS records one person: an E.164 phone (phonenumbers, region RU, a valid number) plus the
normalised surname and first name. A phone alone is a family's shared number; a name alone is anyone."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

__all__ = ["e164", "name_key"]


@lru_cache(maxsize=65536)
def e164(raw: str | None, region: str = "RU") -> str | None:
    """E.164 form, or None when the number is missing or not a valid number (`+7 (888) 888-88-88`)."""
    if not raw or not raw.strip():
        return None
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def name_key(full_name: str) -> str:
    """Surname + first name, case-folded, ё→е: «Фёдорова Алёна Сергеевна» and «ФЕДОРОВА алена» agree."""
    words = full_name.replace("ё", "е").replace("Ё", "Е").casefold().split()
    return " ".join(words[:2])
