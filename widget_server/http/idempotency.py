"""The unit of work of every state-changing endpoint, with Idempotency-Key semantics.

Same key + same body → the first response again (header `Idempotent-Replayed: true`); same key + another
body → 409; a key whose first request is still running → 409 with Retry-After. The stored response is
written in the same transaction as the endpoint's own changes, so there is no window in which the effect
exists without its recorded response.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, ParamSpec

from flask import Response, g, jsonify, make_response, request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from .. import runtime
from ..errors import ApiError, Conflict, DomainError
from ..models import IdempotencyRecord, utcnow
from .lifecycle import db_session, error_response

__all__ = ["IDEMPOTENCY_TTL", "mutation"]

log = logging.getLogger(__name__)

P = ParamSpec("P")

HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = timedelta(days=7)
"""How long a key is remembered; the daily purge job drops older records."""
STALE_IN_PROGRESS = timedelta(seconds=120)
"""A claim older than this belonged to a process that died mid-request; a retry may take it over."""

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _request_hash() -> str:
    raw = request.get_data(cache=True)
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = raw
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b"\n" + request.path.encode() + b"\n")
    digest.update(canonical)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord) -> Response:
    response = make_response(record.response_body or "", record.response_status or 200)
    response.mimetype = "application/json"
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _claim(portal_id: int, key: str, request_hash: str, actor: str) -> IdempotencyRecord | Response:
    """Insert an in-progress record in its own transaction, or answer from the existing one."""
    db = runtime.current().db
    for _ in range(2):
        with db.transaction() as session:
            record = session.scalar(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.portal_id == portal_id, IdempotencyRecord.key == key
                )
            )
            if record is None:
                record = IdempotencyRecord(
                    portal_id=portal_id,
                    key=key,
                    method=request.method,
                    path=request.path,
                    request_hash=request_hash,
                    principal=actor,
                )
                try:
                    with session.begin_nested():
                        session.add(record)
                except IntegrityError:
                    continue  # a concurrent request claimed it first: read its record
                return record
            if record.request_hash != request_hash:
                raise Conflict(
                    f"{HEADER} was already used with a different request",
                    code="idempotency_key_reused",
                    fields={HEADER: ["already used for another request body or path"]},
                )
            if record.state == "completed":
                return _replay(record)
            if utcnow() - record.created_at > STALE_IN_PROGRESS:
                record.created_at = utcnow()
                record.principal = actor
                return record
            raise Conflict(
                "a request with this Idempotency-Key is still being processed",
                code="idempotency_in_progress",
                fields={HEADER: ["still in progress; retry shortly"]},
                headers={"Retry-After": "1"},
            )
    raise Conflict("could not claim the Idempotency-Key", code="idempotency_in_progress")


def _release(record_id: int) -> None:
    with runtime.current().db.transaction() as session:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))


def _as_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        body, status = result
        response = jsonify(body)
        response.status_code = status
        return response
    return jsonify(result)


def mutation(view: Callable[P, Any]) -> Callable[P, Response]:
    """Run a state-changing view as one transaction, honouring Idempotency-Key. Use under `requires`."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        session = db_session()
        key = request.headers.get(HEADER)
        if key is None:
            try:
                response = _as_response(view(*args, **kwargs))
            except DomainError as error:
                session.rollback()
                raise error.as_api_error() from None
            except BaseException:
                session.rollback()
                raise
            session.commit()
            return response

        if not _KEY.match(key):
            raise ApiError(
                f"{HEADER} must be 1-255 printable ASCII characters",
                code="invalid_idempotency_key",
                fields={HEADER: ["1-255 printable ASCII characters, no spaces"]},
            )
        principal = g.principal
        claimed = _claim(principal.portal_id, key, _request_hash(), principal.actor)
        if isinstance(claimed, Response):
            return claimed
        record_id = claimed.id
        try:
            response = _as_response(view(*args, **kwargs))
        except (ApiError, DomainError) as error:
            # A refused request is deterministic for its body: remember the refusal too.
            session.rollback()
            response = error_response(error.as_api_error() if isinstance(error, DomainError) else error)
        except BaseException:
            session.rollback()
            _release(record_id)
            raise
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == record_id)
            .values(
                state="completed",
                response_status=response.status_code,
                response_body=response.get_data(as_text=True),
                completed_at=utcnow(),
            )
        )
        session.commit()
        return response

    wrapper.is_mutation = True  # type: ignore[attr-defined]
    return wrapper
