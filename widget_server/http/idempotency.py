"""The unit of work of every state-changing endpoint, with Idempotency-Key semantics.

Same key + same body → the first response again (header `Idempotent-Replayed: true`); same key + another
body → 409; a key whose first request is still running → 409 with Retry-After. The stored response is
written in the same transaction as the endpoint's own changes, so there is no window in which the effect
exists without its recorded response.

`mutation` claims the key in a short transaction of its own, so a view may call a CRM or the MIS before it
writes without holding a write lock meanwhile. `local_mutation` is for views whose whole work is in this
database (the stay ledger's): the claim joins their transaction, which saves a transaction per request, and
a request that fails leaves no claim behind; a second request with the same key waits on the first one's
uncommitted claim (SQLite's write lock, PostgreSQL's unique index) and is then answered from its record.
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
from marshmallow import Schema
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .. import fast_sql, runtime
from ..errors import ApiError, Conflict, DomainError
from ..models import IdempotencyRecord, utcnow
from .body import prevalidate_body
from .lifecycle import db_session, error_response

__all__ = ["IDEMPOTENCY_TTL", "local_mutation", "mutation"]

log = logging.getLogger(__name__)

P = ParamSpec("P")

HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = timedelta(days=7)
"""How long a key is remembered; the daily purge job drops older records."""
STALE_IN_PROGRESS = timedelta(seconds=120)
"""A claim older than this belonged to a process that died mid-request; a retry may take it over."""

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_RECORDS = IdempotencyRecord.__table__


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


def _upsert(session: Session) -> Callable[..., Any]:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


# Built once per dialect: on the hot path a statement's construction costs more than its execution.
_CLAIMS = {
    dialect: insert_(_RECORDS)
    .on_conflict_do_nothing(index_elements=["portal_id", "key"])
    .returning(_RECORDS.c.id)
    for dialect, insert_ in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
_FINISH = update(_RECORDS).where(_RECORDS.c.id == bindparam("record_id"))
_EXISTING = select(_RECORDS.c.id).where(
    _RECORDS.c.portal_id == bindparam("portal_id"), _RECORDS.c.key == bindparam("key")
)
_RECORD = insert(_RECORDS)


def _claim(
    session: Session, portal_id: int, key: str, request_hash: str, actor: str, *, deferred: bool = False
) -> int | Response | None:
    """Claim the key inside the view's own transaction (the id of our record), or answer from the
    existing one. The usual path is one INSERT … ON CONFLICT DO NOTHING, not a transaction of its own.
    `deferred` (only inside a transaction that holds SQLite's write lock, which no other request can
    enter until it ends): a free key is only looked up, None is returned, and `_finish` inserts the record
    complete — one write of the row instead of an INSERT and an UPDATE of it."""
    statement = _CLAIMS[session.get_bind().dialect.name]
    values = _claim_values(portal_id, key, request_hash, actor)
    for _ in range(2):
        if deferred:
            if fast_sql.run(session, _EXISTING, {"portal_id": portal_id, "key": key}).scalar() is None:
                return None
        else:
            record_id = fast_sql.run(session, statement, values).scalar()
            if record_id is not None:
                return record_id
        record = session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.portal_id == portal_id, IdempotencyRecord.key == key
            )
        )
        if record is None:
            continue  # the request that held it rolled back: claim it again
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
            return record.id
        raise Conflict(
            "a request with this Idempotency-Key is still being processed",
            code="idempotency_in_progress",
            fields={HEADER: ["still in progress; retry shortly"]},
            headers={"Retry-After": "1"},
        )
    raise Conflict("could not claim the Idempotency-Key", code="idempotency_in_progress")


def _claim_values(portal_id: int, key: str, request_hash: str, actor: str) -> dict[str, Any]:
    return {
        "portal_id": portal_id,
        "key": key,
        "method": request.method,
        "path": request.path,
        "request_hash": request_hash,
        "principal": actor,
    }


def _outcome(response: Response) -> dict[str, Any]:
    return {
        "state": "completed",
        "response_status": response.status_code,
        "response_body": response.get_data(as_text=True),
        "completed_at": utcnow(),
    }


def _finish(
    session: Session,
    record_id: int | None,
    claim: tuple[int, str, str, str],
    response: Response,
) -> None:
    """Store the response with the key, in the view's transaction: completing our claim, or (a deferred
    claim) inserting the record whole."""
    outcome = _outcome(response)
    if record_id is None:
        fast_sql.run(session, _RECORD, {**_claim_values(*claim), **outcome})
    else:
        fast_sql.run(session, _FINISH, {"record_id": record_id, **outcome})


def _remember_refusal(
    session: Session, portal_id: int, key: str, request_hash: str, actor: str, response: Response
) -> None:
    """After the rollback of a refused request: complete its claim with the refusal, or, where the claim
    was in the rolled-back transaction, store the refusal afresh."""
    outcome = _outcome(response)
    statement = _upsert(session)(_RECORDS).values(
        **_claim_values(portal_id, key, request_hash, actor), **outcome
    )
    # An abandoned claim taken over by this request is still there (the takeover was rolled back too).
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["portal_id", "key"],
            set_=outcome,
            where=(_RECORDS.c.state == "in_progress") & (_RECORDS.c.request_hash == request_hash),
        )
    )


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
    return _mutation(view, claim_in_view_transaction=False)


def local_mutation(view: Callable[P, Any] | None = None, *, body: Schema | None = None) -> Any:
    """`mutation` for a view that only works in this database (no CRM, MIS or other waits): the key is
    claimed inside the view's own transaction. A view that waits on anything outside would hold SQLite's
    write lock while it waits (and block the sandbox CRM's own transactions): use `mutation` there.
    `body`: the view's request schema, validated before the transaction (on SQLite: outside the write
    lock); the view's `load_body(body)` returns that result."""
    if view is None:
        return lambda inner: _mutation(inner, claim_in_view_transaction=True, body=body)
    return _mutation(view, claim_in_view_transaction=True, body=body)


def _claim_apart(portal_id: int, key: str, request_hash: str, actor: str) -> int | Response | None:
    with runtime.current().db.transaction() as session:
        return _claim(session, portal_id, key, request_hash, actor)


def _mutation(
    view: Callable[P, Any], *, claim_in_view_transaction: bool, body: Schema | None = None
) -> Callable[P, Response]:
    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        if body is not None:
            prevalidate_body(body)
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
        request_hash = _request_hash()
        claim = (principal.portal_id, key, request_hash, principal.actor)
        if claim_in_view_transaction:
            try:
                claimed = _claim(session, *claim, deferred=runtime.current().db.is_sqlite)
            except BaseException:
                session.rollback()
                raise
        else:
            claimed = _claim_apart(*claim)
        if isinstance(claimed, Response):
            session.rollback()  # a replay wrote nothing: end the transaction the claim may have opened
            return claimed
        record_id = claimed
        try:
            response = _as_response(view(*args, **kwargs))
        except (ApiError, DomainError) as error:
            # A refused request is deterministic for its body: remember the refusal too.
            session.rollback()
            response = error_response(error.as_api_error() if isinstance(error, DomainError) else error)
            _remember_refusal(session, principal.portal_id, key, request_hash, principal.actor, response)
            session.commit()
            return response
        except BaseException:
            session.rollback()
            if record_id is not None:  # a deferred claim wrote nothing
                _release(record_id)
            raise
        _finish(session, record_id, claim, response)
        session.commit()
        return response

    wrapper.is_mutation = True  # type: ignore[attr-defined]
    # A local mutation works only in this database: `requires` then authenticates in its transaction too.
    wrapper.works_only_here = claim_in_view_transaction  # type: ignore[attr-defined]
    return wrapper
