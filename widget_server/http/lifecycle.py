"""Per-request plumbing: request id, the request's DB session, one log line, and JSON errors everywhere."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import orjson
from flask import Flask, Response, g, jsonify, request
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from .. import runtime
from ..errors import ApiError, DomainError
from ..logs import log_context

__all__ = ["db_session", "install_lifecycle", "json_ready_response"]

log = logging.getLogger("widget_server.request")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def db_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = runtime.current().db.session()
    return g.db


def error_response(error: ApiError) -> Response:
    response = jsonify(error.to_dict())
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def json_ready_response(document: dict[str, Any], status: int = 200) -> Response:
    """A response for a document built JSON-ready (str keys; str, int, bool, None, list and dict values):
    orjson writes it in a fraction of the time `jsonify`'s encoder takes, which on the ledger's busiest
    endpoints runs inside SQLite's write lock (the body is stored with the idempotency record). Anything
    else in the document (a date, a Decimal) is a bug in its builder and fails loudly here."""
    return Response(orjson.dumps(document), status=status, mimetype="application/json")


def install_lifecycle(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()
        g.log_token = log_context.set({"request_id": g.request_id})

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        principal = g.get("principal")
        log.info(
            "%s %s -> %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "fields": {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(
                        (time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2
                    ),
                    "portal_id": principal.portal_id if principal else None,
                    "actor": principal.actor if principal else None,
                    "remote_addr": request.remote_addr,
                }
            },
        )
        return response

    @app.teardown_request
    def _teardown(exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            if exc is None and request.method in ("GET", "HEAD") and session.in_transaction():
                # A read ends with COMMIT, not the ROLLBACK closing would send: psycopg forgets every
                # statement it has prepared on the connection at a rollback, so on PostgreSQL each GET would
                # make the next requests on that pooled connection parse and plan their statements afresh.
                try:
                    session.commit()
                except Exception:  # a read that failed ends as before; closing rolls it back
                    log.warning("ending a read with COMMIT failed", exc_info=True)
            session.close()
        token = g.pop("log_token", None)
        if token is not None:
            log_context.reset(token)

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(DomainError)
    def _domain_error(error: DomainError) -> Response:
        return error_response(error.as_api_error())

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        api_error = ApiError(error.description or error.name, code=code, status=error.code or 500)
        if error.code == 405 and error.valid_methods:  # type: ignore[attr-defined]
            api_error.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return error_response(api_error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(
            ApiError(
                f"internal error; quote request id {g.get('request_id', '?')} to support",
                code="internal_error",
                status=500,
            )
        )
