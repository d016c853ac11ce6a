"""Phone numbers as the CRMs and MIS exports hold them, turned into one comparable form (E.164)."""

from __future__ import annotations

import phonenumbers

__all__ = ["DEFAULT_REGION", "e164"]

DEFAULT_REGION = "RU"
"""Numbers typed without a country code ("8 (916) 123-45-67") are read as Russian ones."""


def e164(raw: str, region: str = DEFAULT_REGION) -> str | None:
    """E.164 of a phone as people type it ("8 (916) 123-45-67" → "+79161234567"); None if invalid
    (`is_valid_number`, so "+7 (888) 888-88-88" is None, not a match for every other such placeholder)."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
