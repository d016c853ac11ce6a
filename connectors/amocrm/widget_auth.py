"""The amoCRM widget's disposable token (`X-Auth-Token`, research/amocrm.md §2.4).

HS256 with the integration's `client_secret`, `aud` = scheme://host of our redirect URI, 30 minutes of
life. joserfc checks the signature and the time claims; we add the audience, our `client_uuid` and the
claims we need (account, user, subdomain), and refuse anything else with a reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry

from ..errors import AnomalousPayload

__all__ = ["InvalidWidgetToken", "WidgetClaims", "audience_for", "verify_disposable_token"]

LEEWAY_S = 30


class InvalidWidgetToken(AnomalousPayload):
    """The token is forged, expired, for another audience or another integration."""


@dataclass(frozen=True)
class WidgetClaims:
    account_id: str
    user_id: str
    subdomain: str
    issuer: str
    jti: str | None
    is_admin: bool


def audience_for(redirect_uri: str) -> str:
    parts = urlsplit(redirect_uri)
    return f"{parts.scheme}://{parts.netloc}"


def verify_disposable_token(
    token: str, *, client_secret: str, client_id: str, audience: str, now: int | None = None
) -> WidgetClaims:
    if not token or token.count(".") != 2:
        raise InvalidWidgetToken("X-Auth-Token: not a JWT")
    try:
        decoded = jwt.decode(token, OctKey.import_key(client_secret), algorithms=["HS256"])
    except (JoseError, ValueError) as exc:
        raise InvalidWidgetToken(
            f"X-Auth-Token: signature or format rejected ({type(exc).__name__})"
        ) from None
    claims = decoded.claims
    registry = JWTClaimsRegistry(
        now=now if now is not None else int(time.time()),
        leeway=LEEWAY_S,
        exp={"essential": True},
        nbf={"essential": False},
        aud={"essential": True, "value": audience},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise InvalidWidgetToken(f"X-Auth-Token: {exc.description or type(exc).__name__}") from None
    if str(claims.get("client_uuid", "")) != client_id:
        raise InvalidWidgetToken("X-Auth-Token: issued for another integration (client_uuid)")
    missing = [name for name in ("account_id", "user_id", "subdomain") if not claims.get(name)]
    if missing:
        raise InvalidWidgetToken(f"X-Auth-Token: missing claims {', '.join(missing)}")
    return WidgetClaims(
        account_id=str(claims["account_id"]),
        user_id=str(claims["user_id"]),
        subdomain=str(claims["subdomain"]),
        issuer=str(claims.get("iss", "")),
        jti=str(claims["jti"]) if claims.get("jti") else None,
        is_admin=bool(claims.get("is_admin", False)),
    )
