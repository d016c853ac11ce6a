"""Checks of the arguments a connector is called with, before any request: the same refusals for every CRM."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence

from .errors import Rejected
from .types import Handover

__all__ = ["checked_handovers", "invalid", "is_platform_id", "platform_id", "required_text"]

_ID = re.compile(r"^[1-9]\d{0,18}$")


def invalid(path: str, why: str) -> Rejected:
    return Rejected(f"{path}: {why}", status=422, code="invalid", path=path)


def required_text(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(path, f"a non-empty string is required (got {value!r})")
    return value


def is_platform_id(value: object) -> bool:
    return isinstance(value, str) and _ID.match(value) is not None


def platform_id(value: object, path: str, *, not_found_code: str) -> int:
    """A platform's numeric id. A malformed one cannot exist, so it is reported like an unknown one (404),
    with the code that platform itself uses for a missing entity."""
    if not is_platform_id(value):
        raise Rejected(f"{path}: no such id {value!r}", status=404, code=not_found_code, path=path)
    return int(str(value))


def checked_handovers(
    handovers: Sequence[Handover],
    user_id: Callable[[str, str], int],
    found: Callable[[list[int]], Collection[int]],
    *,
    not_found_code: str,
) -> dict[int, tuple[Handover, int]]:
    """deal id → (hand-over, the user's platform id), every user checked (`user_id(id, path)`) and every
    deal found (`found(ids)` → the ids the platform has) before anything is written."""
    checked: dict[int, tuple[Handover, int]] = {}
    users: dict[str, int] = {}  # a sweep hands many leads to few operators: each checked once
    for i, handover in enumerate(handovers):
        deal = platform_id(handover.deal_id, f"handovers[{i}].deal_id", not_found_code=not_found_code)
        if handover.user_id not in users:
            users[handover.user_id] = user_id(handover.user_id, f"handovers[{i}].user_id")
        checked[deal] = (handover, users[handover.user_id])
    if checked:
        have = found(list(checked))
        missing = [deal for deal in checked if deal not in have]
        if missing:
            raise Rejected(
                f"handovers: no such deal(s) {missing}", status=404, code=not_found_code, path="handovers"
            )
    return checked
