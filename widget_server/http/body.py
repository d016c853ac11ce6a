"""Reading a JSON body into a marshmallow schema, with errors that name the field and the reason."""

from __future__ import annotations

import json
from typing import Any

from flask import g, request
from marshmallow import Schema, ValidationError

from ..errors import ApiError, ValidationFailed

__all__ = ["load_body", "load_query", "prevalidate_body", "read_json_object"]


def read_json_object() -> dict[str, Any]:
    """The body as a JSON object; 415 for another content type, 400 for malformed JSON or a non-object."""
    if not request.is_json:
        raise ApiError(
            "Content-Type must be application/json",
            code="unsupported_media_type",
            status=415,
            fields={"Content-Type": [f"expected application/json, got {request.mimetype or 'nothing'}"]},
        )
    raw = request.get_data(cache=True)
    try:
        document = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = (
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            if isinstance(exc, json.JSONDecodeError)
            else "body is not UTF-8"
        )
        raise ApiError(reason, code="malformed_json", fields={"body": [reason]}) from None
    if not isinstance(document, dict):
        reason = (
            f"must be a JSON object, got {type(document).__name__ if document is not None else 'nothing'}"
        )
        raise ApiError(f"body: {reason}", code="malformed_json", fields={"body": [reason]})
    return document


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested {"lines": {0: {"qty": [...]}}} → {"lines[0].qty": [...]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int):
                name = f"{prefix}[{key}]"
            elif key == "_schema":
                name = prefix or "body"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(_flatten(value, name))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        flat[prefix or "body"] = list(messages)
    elif isinstance(messages, list):
        for item in messages:
            flat.update(_flatten(item, prefix))
    else:
        flat[prefix or "body"] = [str(messages)]
    return flat


def _load(schema: Schema, data: dict[str, Any]) -> Any:
    try:
        return schema.load(data)
    except ValidationError as exc:
        fields = _flatten(exc.messages)
        summary = "; ".join(f"{name}: {' '.join(reasons)}" for name, reasons in sorted(fields.items()))
        raise ValidationFailed(summary, fields=fields) from None


def load_body(schema: Schema) -> Any:
    loaded = g.get("prevalidated_body")
    if loaded is not None and loaded[0] is schema:
        return loaded[1]
    return _load(schema, read_json_object())


def prevalidate_body(schema: Schema) -> None:
    """Validate the body before the view's transaction begins; its `load_body(schema)` then returns the
    result. A body that fails is left for the view, whose refusal is then handled (and remembered for its
    Idempotency-Key) as before."""
    try:
        g.prevalidated_body = (schema, _load(schema, read_json_object()))
    except ApiError:
        g.pop("prevalidated_body", None)


def load_query(schema: Schema) -> Any:
    return _load(schema, {key: request.args.get(key) for key in request.args})
