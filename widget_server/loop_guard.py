"""Telling our own writes' echoes from people's changes.

A CRM reports every change to a deal, ours included: the balance we mirrored comes straight back as an
"update" hook. Reacting to that would loop (restore → hook → restore …) or at least waste the portal's
API budget. Each source says how it recognises its echoes; an event it does not claim is a person's.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from connectors.types import CrmEvent, DealStageChanged, DealUpdated

from .amocrm_hooks import is_own_write

__all__ = ["ECHO_CHECKS", "is_echo"]


def _amocrm_echo(client: redis.Redis, portal_id: int, event: CrmEvent) -> bool:
    # amo's hook carries the lead's `updated_at`, the same second our PATCH got back (kept 1 h).
    if not isinstance(event, DealUpdated | DealStageChanged) or event.occurred_at is None:
        return False
    return is_own_write(client, portal_id, "leads", event.deal_id, int(event.occurred_at.timestamp()))


def _bitrix24_echo(client: redis.Redis, portal_id: int, event: CrmEvent) -> bool:
    # Bitrix24 events carry only the deal id: the test compares the deal with what we last wrote to it.
    from .bitrix24_client import is_own_echo

    return is_own_echo(client, portal_id, event)


ECHO_CHECKS: dict[str, Callable[[redis.Redis, int, CrmEvent], bool]] = {
    "amocrm": _amocrm_echo,
    "amocrm_poll": _amocrm_echo,
    "bitrix24": _bitrix24_echo,
}
"""Inbox source → its echo test. Sources without one have every event treated as a person's."""


def is_echo(source: str, client: redis.Redis, portal_id: int, event: CrmEvent) -> bool:
    check = ECHO_CHECKS.get(source)
    return check is not None and check(client, portal_id, event)
