"""CORS for the amoCRM widget: its `$authorizedAjax` calls come from the account's own origin.

Only an installed account's `https://{subdomain}.{amocrm.ru|amocrm.com|kommo.com}` is echoed (never
`*`), with the headers the widget sends; `Vary: Origin` keeps caches from mixing accounts.
"""

from __future__ import annotations

import re
import time

from flask import Flask, Response, request
from sqlalchemy import select

from .. import runtime
from ..db import mark_read_only
from ..models import Portal

__all__ = ["install_cors"]

AMO_ORIGIN = re.compile(r"^https://([a-z0-9-]+\.(?:amocrm\.ru|amocrm\.com|kommo\.com))$")
ALLOWED_HEADERS = "X-Auth-Token, Idempotency-Key, Content-Type"
CACHE_S = 60.0

_known: dict[str, tuple[float, bool]] = {}


def _installed(host: str) -> bool:
    cached = _known.get(host)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    session = runtime.current().db.session()
    try:
        mark_read_only(session)
        found = session.scalar(
            select(Portal.id).where(
                Portal.kind == "amocrm", Portal.domain == host, Portal.status != "uninstalled"
            )
        )
    finally:
        session.close()
    _known[host] = (time.monotonic() + CACHE_S, found is not None)
    return found is not None


def install_cors(app: Flask) -> None:
    @app.after_request
    def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if not origin or not request.path.startswith("/api/"):
            return response
        response.vary.add("Origin")
        match = AMO_ORIGIN.match(origin)
        if match and _installed(match.group(1)):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, OPTIONS"
            response.headers["Access-Control-Max-Age"] = "600"
        return response
