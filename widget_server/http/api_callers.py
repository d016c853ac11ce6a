"""Caller identification for the telephony pop-up: GET /api/v1/callers?phone=… (staff), from our DB alone."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from ..callers import lookup_callers
from .auth import current_portal_row, local_read, requires
from .body import load_query
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_reports import CallerQuerySchema

__all__ = ["callers_api"]

callers_api = Blueprint("callers_api", __name__, url_prefix="/api/v1")

_QUERY = CallerQuerySchema()
"""One instance for every request: building a marshmallow schema costs more than the lookup's queries."""


@callers_api.get("/callers")
@api_doc(
    summary="Every patient on a phone number (families share phones), with visits and open deals",
    tags=["callers"], query=CallerQuerySchema, errors=(422,),
)  # fmt: skip
@requires("staff")
@local_read
def get_callers() -> Any:
    query = load_query(_QUERY)
    # The portal's columns are enough: no ORM Portal on the telephony pop-up's path. The read (with
    # authentication's last_used_at, on PostgreSQL) ends with COMMIT at teardown, as every GET's does.
    return lookup_callers(db_session(), current_portal_row(), query["phone"])
