"""Subscribing our hook URL to an account's events (research/amocrm.md §4.1: `/api/v4/webhooks`, admin only).

A reinstall issues a new URL secret, so our earlier subscriptions are removed first; other integrations'
webhooks in the account are left alone.
"""

from __future__ import annotations

import requests

from ..errors import ReauthRequired, Rejected, RetryLater

__all__ = ["SUBSCRIBED_EVENTS", "subscribe_webhooks"]

SUBSCRIBED_EVENTS = (
    "add_lead",
    "update_lead",
    "status_lead",
    "responsible_lead",
    "delete_lead",
    "restore_lead",
    "add_contact",
    "update_contact",
    "delete_contact",
)


def _check(response: requests.Response, what: str) -> None:
    if response.status_code in (200, 201, 204):
        return
    if response.status_code == 401:
        raise ReauthRequired(f"{what}: amoCRM refused the token")
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryLater(f"{what}: amoCRM answered {response.status_code}", retry_after=60)
    raise Rejected(
        f"{what}: amoCRM answered {response.status_code} (plan or rights?)", status=response.status_code
    )


def subscribe_webhooks(
    host: str, access_token: str, destination: str, *, ours_prefix: str, timeout: float = 15.0
) -> list[str]:
    """Replace our subscriptions (destinations starting with `ours_prefix`) by one for `destination`."""
    try:
        return _subscribe(host, access_token, destination, ours_prefix, timeout)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RetryLater(
            f"subscribing webhooks: amoCRM unreachable ({type(exc).__name__})", retry_after=60
        ) from None


def _subscribe(host: str, access_token: str, destination: str, ours_prefix: str, timeout: float) -> list[str]:
    headers = {"Authorization": f"Bearer {access_token}"}
    base = f"https://{host}/api/v4/webhooks"
    listed = requests.get(base, headers=headers, timeout=timeout)
    if listed.status_code != 204:
        _check(listed, "listing webhooks")
        for hook in (listed.json().get("_embedded") or {}).get("webhooks") or []:
            if str(hook.get("destination", "")).startswith(ours_prefix):
                _check(
                    requests.delete(
                        base, headers=headers, json={"destination": hook["destination"]}, timeout=timeout
                    ),
                    "removing our old webhook",
                )
    added = requests.post(
        base,
        headers=headers,
        json={"destination": destination, "settings": list(SUBSCRIBED_EVENTS)},
        timeout=timeout,
    )
    _check(added, "subscribing webhooks")
    return list(SUBSCRIBED_EVENTS)
