"""The widget API's OpenAPI document, generated from the marshmallow schemas the views really use."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app, jsonify
from marshmallow import Schema

from .schemas import ErrorSchema

__all__ = ["api_doc", "build_spec", "openapi_blueprint"]

F = TypeVar("F", bound=Callable[..., Any])

_PATH_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>[a-z_]+)>")


def api_doc(
    *,
    summary: str,
    tags: list[str],
    request: type[Schema] | Schema | None = None,
    query: type[Schema] | Schema | None = None,
    response: type[Schema] | Schema | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        view.__apidoc__ = {  # type: ignore[attr-defined]
            "summary": summary,
            "tags": tags,
            "request": request,
            "query": query,
            "response": response,
            "status": status,
            "errors": errors,
        }
        return view

    return decorate


def _operation(view: Any, method: str) -> dict[str, Any]:
    doc = view.__apidoc__
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": "OK"}
    if doc["response"] is not None:
        ok["content"] = {"application/json": {"schema": doc["response"]}}
    responses[str(doc["status"])] = ok
    error_codes = set(doc["errors"]) | {401}
    role = getattr(view, "required_role", None)
    if role and role != "viewer":
        error_codes.add(403)
    if getattr(view, "is_mutation", False):
        error_codes |= {400, 409, 415, 422}
    for code in sorted(error_codes):
        responses[str(code)] = {
            "description": "Error",
            "content": {"application/json": {"schema": "Error"}},
        }
    operation: dict[str, Any] = {"summary": doc["summary"], "tags": doc["tags"], "responses": responses}
    if role:
        operation["security"] = [{"apiKey": []}]
        operation["description"] = f"Requires role `{role}`."
    parameters: list[dict[str, Any]] = []
    if doc["query"] is not None:
        parameters.append({"in": "query", "schema": doc["query"]})
    if getattr(view, "is_mutation", False):
        parameters.append(
            {
                "in": "header",
                "name": "Idempotency-Key",
                "required": False,
                "schema": {"type": "string"},
                "description": "Same key and body replays the first response; another body gets 409.",
            }
        )
    if parameters:
        operation["parameters"] = parameters
    if doc["request"] is not None and method in {"post", "put", "patch"}:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": doc["request"]}},
        }
    return operation


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(
        title="ClinicBridge widget API",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Deal-card widgets and integrations for clinics on amoCRM and Bitrix24."},
    )
    spec.components.security_scheme("apiKey", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorSchema)
    paths: dict[str, dict[str, Any]] = {}
    path_parameters: dict[str, list[dict[str, Any]]] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if view is not None and hasattr(view, "__openapi__"):
            # A route serving several fixed operations (IDENT's catch-all) documents them itself.
            view.__openapi__(spec)
            continue
        if view is None or not hasattr(view, "__apidoc__"):
            continue
        path = _PATH_PARAM.sub(lambda m: "{" + m.group("name") + "}", rule.rule)
        operations = paths.setdefault(path, {})
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operations[method.lower()] = _operation(view, method.lower())
        parameters = [
            {
                "in": "path",
                "name": m.group("name"),
                "required": True,
                "schema": {"type": "integer" if m.group("conv") == "int" else "string"},
            }
            for m in _PATH_PARAM.finditer(rule.rule)
        ]
        path_parameters[path] = parameters
    for path in sorted(paths):
        spec.path(path=path, operations=paths[path], parameters=path_parameters.get(path) or None)
    return spec.to_dict()


openapi_blueprint = Blueprint("openapi", __name__)


@openapi_blueprint.get("/api/v1/openapi.json")
def openapi_document() -> Any:
    if "openapi_spec" not in current_app.extensions:
        current_app.extensions["openapi_spec"] = build_spec(current_app)
    return jsonify(current_app.extensions["openapi_spec"])
