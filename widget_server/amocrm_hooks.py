"""Portal-side pieces of amoCRM hooks: the per-portal secrets and the loop guard's memory of our writes.

Account webhooks are unsigned (research §4.2), so a long random secret in the URL is the only proof; the
DP widget hook has no URL of its own per portal, so its secret rides in a hidden DP setting (§3). Both
are stored as SHA-256 hex only: a database leak must not let anyone post hooks as amo. A secret of 256
random bits needs no salt or slow hash, since nobody can guess it from its digest.

The DP secret must be handed to the widget again whenever an admin opens a DP action's form, so it is
derived (HMAC of SECRET_KEY over the account and a generation number) rather than random: nothing
secret is stored, and bumping the generation rotates it. Changing SECRET_KEY rotates it too; the next
form the admin opens then carries the new one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

import redis

from .models import Portal

__all__ = [
    "OWN_WRITE_TTL_S",
    "dp_secret_for",
    "dp_secret_matches",
    "install_dp_secret",
    "install_webhook_secret",
    "is_own_write",
    "remember_own_write",
    "webhook_secret_matches",
]

OWN_WRITE_TTL_S = 3600
"""How long an `updated_at` our write got back marks hooks as our own echo. amo retries a hook for up to
about 1 h 35 min (§4.3), but by then the job re-reads the entity anyway; the issue fixes 1 h."""

_WEBHOOK = "webhook_secret_sha256"
_DP = "dp_secret_sha256"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _install(portal: Portal, name: str) -> str:
    secret = secrets.token_urlsafe(32)
    settings: dict[str, Any] = dict(portal.settings or {})
    amocrm = dict(settings.get("amocrm") or {})
    amocrm[name] = _digest(secret)
    settings["amocrm"] = amocrm
    # A new dict, not an in-place edit: the JSON column only notices assignment.
    portal.settings = settings
    return secret


def _matches(portal: Portal, name: str, candidate: str | None) -> bool:
    stored = ((portal.settings or {}).get("amocrm") or {}).get(name)
    if not isinstance(stored, str) or not candidate:
        return False
    # Compare digests, not secrets, in constant time: equal length always, and nothing secret is held.
    return hmac.compare_digest(_digest(candidate), stored)


def install_webhook_secret(portal: Portal) -> str:
    """A new URL secret for the portal's account webhooks, replacing any old one. The hash is stored
    (the caller commits); the plaintext is returned once, to register ``/hooks/amocrm/{slug}/{secret}``."""
    return _install(portal, _WEBHOOK)


_DP_GENERATION = "dp_secret_generation"


def _derived_dp_secret(secret_key: str, portal: Portal, generation: int) -> str:
    message = f"amocrm-dp:{portal.kind}:{portal.external_id}:{generation}".encode()
    digest = hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _set_amocrm(portal: Portal, **values: Any) -> None:
    settings: dict[str, Any] = dict(portal.settings or {})
    settings["amocrm"] = {**(settings.get("amocrm") or {}), **values}
    portal.settings = settings  # a new dict: the JSON column only notices assignment


def install_dp_secret(portal: Portal, secret_key: str) -> str:
    """Rotate the portal's DP secret: DP actions saved with the old one stop being accepted until their
    form is opened and saved again. The caller commits."""
    generation = int(((portal.settings or {}).get("amocrm") or {}).get(_DP_GENERATION, 0)) + 1
    secret = _derived_dp_secret(secret_key, portal, generation)
    _set_amocrm(portal, **{_DP: _digest(secret), _DP_GENERATION: generation})
    return secret


def dp_secret_for(portal: Portal, secret_key: str) -> str:
    """The DP secret the widget's `dpSettings()` puts into the hidden setting
    `connectors.amocrm.hooks.DP_SECRET_SETTING`; installed on first use (the caller commits)."""
    generation = ((portal.settings or {}).get("amocrm") or {}).get(_DP_GENERATION)
    if isinstance(generation, int):
        secret = _derived_dp_secret(secret_key, portal, generation)
        if _matches(portal, _DP, secret):
            return secret
    return install_dp_secret(portal, secret_key)


def webhook_secret_matches(portal: Portal, candidate: str | None) -> bool:
    return _matches(portal, _WEBHOOK, candidate)


def dp_secret_matches(portal: Portal, candidate: str | None) -> bool:
    return _matches(portal, _DP, candidate)


def _own_key(portal_id: int, entity: str, entity_id: str) -> str:
    return f"cb:amo:own:{portal_id}:{entity}:{entity_id}"


def remember_own_write(
    client: redis.Redis,
    portal_id: int,
    entity: str,
    entity_id: str | int,
    updated_at: str | int,
    *,
    now: float | None = None,
) -> None:
    """Record the `updated_at` amo returned for our write, so the hook reporting it is known as ours.

    A sorted set per entity scored by write time: each mark expires on its own hour, and the key itself
    goes when the last one does.
    """
    moment = time.time() if now is None else now
    key = _own_key(portal_id, entity, str(entity_id))
    with client.pipeline() as pipe:
        pipe.zadd(key, {str(updated_at): moment})
        pipe.zremrangebyscore(key, "-inf", moment - OWN_WRITE_TTL_S)
        pipe.expire(key, OWN_WRITE_TTL_S)
        pipe.execute()


def is_own_write(
    client: redis.Redis,
    portal_id: int,
    entity: str,
    entity_id: str | int,
    updated_at: str | int | None,
    *,
    now: float | None = None,
) -> bool:
    """True when one of our writes in the last hour got this `updated_at` for this entity."""
    if updated_at in (None, ""):
        return False
    moment = time.time() if now is None else now
    score = client.zscore(_own_key(portal_id, entity, str(entity_id)), str(updated_at))
    return score is not None and float(score) >= moment - OWN_WRITE_TTL_S
