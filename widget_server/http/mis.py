"""IDENT's HTTP contract, IDENT as the client (research/mis.md §1.2–1.5), under `/mis/ident/<portal slug>/`.

IDENT GETs what it loads (GetTickets, GetFinishedCalls, GetOngoingCalls) and POSTs what it uploads
(PostTimeTable). Method and query names match case-insensitively (one IDENT build sends `offSet`); nothing
redirects, since a redirected POST loses its body. A refusal is 401/403 with a plain-text reason, which
IDENT writes to its exchange log. JSON or XML per portal setting (`mis.ident_format`), XML read by defusedxml.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from defusedxml import ElementTree as SafeXml
from flask import Blueprint, Response, request
from sqlalchemy import select

from .. import runtime
from ..appointments.tickets import ATTRIBUTION_KEYS, tickets
from ..appointments.timetable import (
    TimetableError,
    ident_key_matches,
    replace_timetable,
    validate_timetable,
)
from ..models import Portal

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "mis_ident"]

mis_ident = Blueprint("mis_ident", __name__)

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
KEY_HEADER = "IDENT-Integration-Key"
# `+0300` as well as `+03:00`: IDENT builds and hand-made tests send both.
_OFFSET_NO_COLON = re.compile(r"([+-]\d{2})(\d{2})$")


def _text(status: int, reason: str) -> Response:
    return Response(reason, status=status, mimetype="text/plain")


def _format(portal: Portal) -> str:
    return ((portal.settings or {}).get("mis") or {}).get("ident_format", "json")


def _args() -> dict[str, str]:
    return {k.lower(): v for k, v in request.args.items()}


def _moment(args: dict[str, str], name: str) -> datetime | str:
    raw = args.get(name.lower())
    if raw is None or not raw.strip():
        return f"{name} is required (ISO 8601 with offset, e.g. 2026-03-12T10:00:00+03:00)"
    text = _OFFSET_NO_COLON.sub(r"\1:\2", raw.strip().replace(" ", "+"))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return f"{name}: not an ISO 8601 date and time: {raw}"
    if moment.tzinfo is None:
        return f"{name}: an offset such as +03:00 is required: {raw}"
    return moment


def _int_arg(args: dict[str, str], name: str, default: int, maximum: int | None) -> int | str:
    raw = args.get(name.lower())
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        return f"{name}: a non-negative integer is required: {raw}"
    value = int(raw)
    if maximum is not None and not 1 <= value <= maximum:
        return f"{name}: must be between 1 and {maximum}: {raw}"
    return value


def _xml_tickets(items: list[dict[str, Any]]) -> bytes:
    root = Element("ArrayOfTicket")
    for item in items:
        ticket = SubElement(root, "Ticket")
        for key, value in item.items():
            SubElement(ticket, key).text = str(value)
    return b'<?xml version="1.0" encoding="utf-8"?>' + tostring(root, encoding="unicode").encode()


def _xml_body(raw: bytes) -> dict[str, Any]:
    """`<TimeTable><Doctors><Doctor><Id>…` → the JSON shape: one list per section, one dict per item."""
    root = SafeXml.fromstring(raw)
    return {section.tag: [{f.tag: (f.text or "") for f in item} for item in section] for section in root}


def _respond(portal: Portal, items: list[dict[str, Any]]) -> Response:
    if _format(portal) == "xml":
        return Response(_xml_tickets(items), status=200, mimetype="application/xml")
    return Response(json.dumps(items, ensure_ascii=False), status=200, mimetype="application/json")


@mis_ident.route("/mis/ident/<slug>/<method>", methods=["GET", "POST"], strict_slashes=False)
def ident(slug: str, method: str) -> Response:
    key = request.headers.get(KEY_HEADER)
    if not key:
        return _text(401, f"{KEY_HEADER} header is missing")
    handler = _METHODS.get(method.lower())
    if handler is None:
        return _text(404, f"unknown method {method}")
    verb, run = handler
    with runtime.current().db.transaction() as session:
        portal = session.scalar(select(Portal).where(Portal.slug == slug))
        # One answer for an unknown portal and a wrong key: the reason must not confirm which portals exist.
        if portal is None or not ident_key_matches(portal, key):
            return _text(403, f"{KEY_HEADER} is not valid for this clinic")
        if not portal.is_usable:
            return _text(403, f"the clinic's integration is {portal.status}")
        if request.method != verb:
            return _text(405, f"{method} takes {verb}")
        return run(session, portal)


def _get_tickets(session: Any, portal: Portal) -> Response:
    args = _args()
    since, until = _moment(args, "dateTimeFrom"), _moment(args, "dateTimeTo")
    limit = _int_arg(args, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = _int_arg(args, "offset", 0, None)
    for value in (since, until, limit, offset):
        if isinstance(value, str):
            return _text(400, value)
    assert isinstance(since, datetime) and isinstance(until, datetime)
    assert isinstance(limit, int) and isinstance(offset, int)
    if since > until:
        return _text(400, "dateTimeFrom is after dateTimeTo")
    return _respond(portal, tickets(session, portal, since, until, limit=limit, offset=offset))


def _post_timetable(session: Any, portal: Portal) -> Response:
    raw = request.get_data()
    try:
        if raw.lstrip().startswith(b"<"):
            body = _xml_body(raw)
        else:
            body = json.loads(raw or b"null")
        doc = validate_timetable(body)
    except (ValueError, SafeXml.ParseError) as exc:
        # TimetableError is a ValueError; so are JSON and defusedxml's refusals (entities, DTDs).
        reason = str(exc) if isinstance(exc, TimetableError) else f"body is not valid JSON or XML: {exc}"
        return _text(400, reason)
    replace_timetable(session, portal, doc)
    return Response("", status=200, mimetype="text/plain")


def _no_calls(session: Any, portal: Portal) -> Response:
    # We serve no telephony; an empty list keeps IDENT's exchange log free of 404s.
    return _respond(portal, [])


_METHODS = {
    "gettickets": ("GET", _get_tickets),
    "posttimetable": ("POST", _post_timetable),
    "getfinishedcalls": ("GET", _no_calls),
    "getongoingcalls": ("GET", _no_calls),
}


# --- OpenAPI: the catch-all route serves four fixed operations, documented one by one ---------------------


def _plain(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _json_or_xml(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}, "application/xml": {"schema": schema}},
    }


_REFUSALS = {
    "401": _plain(f"`{KEY_HEADER}` header missing (plain-text reason)"),
    "403": _plain(
        "The key is wrong, belongs to another clinic, or the clinic's integration is not active "
        "(plain-text reason; an unknown clinic gets the same answer)"
    ),
}
_SLUG = {"in": "path", "name": "slug", "required": True, "schema": {"type": "string"}}
_MOMENT = {"type": "string", "format": "date-time", "example": "2026-03-12T10:00:00+03:00"}
_TICKET = {
    "type": "object",
    "required": ["Id", "DateAndTime", "ClientPhone", "ClientFullName"],
    "properties": {
        "Id": {"type": "string", "example": "cb-31844567", "description": "`cb-` + the CRM deal id"},
        "DateAndTime": _MOMENT,
        "ClientPhone": {"type": "string", "example": "+79161234567", "description": "E.164, one number"},
        "ClientFullName": {"type": "string"},
        "ClientEmail": {"type": "string"},
        "FormName": {"type": "string"},
        "Comment": {"type": "string"},
        **{name: {"type": "string"} for name in ATTRIBUTION_KEYS.values()},
    },
}
_NAMED_LIST = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["Id", "Name"],
        "properties": {"Id": {"type": "integer"}, "Name": {"type": "string"}},
    },
}
_TIMETABLE = {
    "type": "object",
    "required": ["Doctors", "Intervals"],
    "properties": {
        "Doctors": _NAMED_LIST,
        "Branches": _NAMED_LIST,
        "Intervals": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["DoctorId", "StartDateTime", "LengthInMinutes", "IsBusy"],
                "properties": {
                    "DoctorId": {"type": "integer"},
                    "BranchId": {"type": "integer", "nullable": True},
                    "StartDateTime": _MOMENT,
                    "LengthInMinutes": {"type": "integer"},
                    "IsBusy": {"type": "boolean"},
                },
            },
        },
    },
}


def _operation(summary: str, ok: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "tags": ["mis-ident"],
        "security": [{"identIntegrationKey": []}],
        "description": "Called by IDENT. Method and query names match case-insensitively; no redirects.",
        "responses": {"200": ok, **extra.pop("errors", {}), **_REFUSALS},
        **extra,
    }


def _query(name: str, schema: dict[str, Any], required: bool, description: str) -> dict[str, Any]:
    return {"in": "query", "name": name, "required": required, "schema": schema, "description": description}


def _document(spec: Any) -> None:
    spec.components.security_scheme(
        "identIntegrationKey", {"type": "apiKey", "in": "header", "name": KEY_HEADER}
    )
    base = "/mis/ident/{slug}"
    no_calls = _json_or_xml({"type": "array", "items": {"type": "object"}, "maxItems": 0}, "Always `[]`")
    spec.path(
        path=f"{base}/GetTickets",
        parameters=[_SLUG],
        operations={
            "get": _operation(
                "Our intake leads as IDENT tickets, a bare array in a stable order (stateless paging)",
                _json_or_xml({"type": "array", "items": _TICKET}, "Tickets (JSON or XML per clinic setting)"),
                parameters=[
                    _query("dateTimeFrom", _MOMENT, True, "Offset with or without a colon"),
                    _query("dateTimeTo", _MOMENT, True, "Not before dateTimeFrom"),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                        False,
                        "Page size",
                    ),
                    _query("offset", {"type": "integer", "minimum": 0, "default": 0}, False, "Also `offSet`"),
                ],
                errors={"400": _plain("A parameter missing or bad, or dateTimeFrom after dateTimeTo")},
            )
        },
    )
    spec.path(
        path=f"{base}/PostTimeTable",
        parameters=[_SLUG],
        operations={
            "post": _operation(
                "Doctors, branches and free/busy intervals: a valid snapshot replaces the last one",
                {"description": "Stored (empty body)"},
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": _TIMETABLE},
                        "application/xml": {"schema": _TIMETABLE},
                    },
                },
                errors={"400": _plain("The body is not a valid timetable; the previous snapshot is kept")},
            )
        },
    )
    for method in ("GetFinishedCalls", "GetOngoingCalls"):
        spec.path(
            path=f"{base}/{method}",
            parameters=[_SLUG],
            operations={"get": _operation("No telephony here: always an empty list", no_calls)},
        )


ident.__openapi__ = _document  # type: ignore[attr-defined]
