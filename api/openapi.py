"""The OpenAPI 3.1 document, derived from the app's URL rules: each view's docstring and RouteDoc
(api/route_docs.py) with the pydantic models that validate its body. Swagger UI at /docs is served
from the flask-swagger-ui package (no CDN: nothing outside loads)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from api.route_docs import COMMON_ERRORS, RouteDoc, documented, is_static_endpoint, route_doc

bp = Blueprint("openapi", __name__)
REF = "#/components/schemas/{model}"
ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
STATUS_WORDS = {
    400: "invalid input, naming the field",
    401: "no valid API key",
    403: "the key's role may not do this",
    404: "unknown or expired",
    409: "conflicts with the current state",
    413: "body too large",
    415: "the body must be application/json",
    429: "too many requests; see Retry-After",
    503: "a dependency (Redis, a worker, the Hub) is unavailable",
    504: "did not finish in time",
}
# Prometheus's scrape endpoint: text for Prometheus, not an API for clients (README, Monitoring).
NOT_IN_THE_DOCUMENT = {"telemetry.metrics"}


class UndocumentedRoute(RuntimeError):
    """A URL rule whose view carries no RouteDoc: every route must say what it takes and answers."""


def documented_rules(app: Flask) -> list[Rule]:
    """The URL rules the document must cover: all but static files and Swagger UI's own files."""
    return [
        rule
        for rule in app.url_map.iter_rules()
        if not is_static_endpoint(rule.endpoint) and rule.endpoint not in NOT_IN_THE_DOCUMENT
    ]


def openapi_path(rule: Rule) -> str:
    """A werkzeug rule as an OpenAPI path: `<id>` and `<int:id>` become `{id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def document(app: Flask) -> dict[str, Any]:
    """The whole OpenAPI document; UndocumentedRoute if a view lacks its RouteDoc."""
    paths: dict[str, Any] = {}
    bodies = set()
    for rule in documented_rules(app):
        view = app.view_functions[rule.endpoint]
        doc = route_doc(view)
        if doc is None:
            raise UndocumentedRoute(f"{rule.rule} ({rule.endpoint}) has no @documented")
        if doc.body is not None:
            bodies.add(doc.body)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule), {})[method.lower()] = _operation(rule, method, view, doc)
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(bodies, key=lambda m: m.__name__)], ref_template=REF
    )
    components = {**schemas.get("$defs", {}), "Error": ERROR_SCHEMA}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TorchWeave",
            "version": "1",
            "description": "A distributed LLM inference server with resumable token streams.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components},
    }


def _operation(rule: Rule, method: str, view: Any, doc: RouteDoc) -> dict[str, Any]:
    summary, _, description = (view.__doc__ or "").strip().partition("\n")
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in sorted(rule.arguments)
    ]
    params += [
        {"name": q.name, "in": "query", "required": q.required, "schema": q.schema}
        | ({"description": q.description} if q.description else {})
        for q in doc.query
    ]
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{rule.endpoint}",
        "summary": summary.strip(),
        "responses": _responses(doc),
    }
    if description.strip():
        op["description"] = " ".join(description.split())
    if params:
        op["parameters"] = params
    if doc.body is not None:
        ref = {"$ref": REF.format(model=doc.body.__name__)}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
    return op


def _responses(doc: RouteDoc) -> dict[str, Any]:
    if doc.websocket:
        return {"101": {"description": "WebSocket upgrade: the same events as JSON messages"}}
    content_type = "text/event-stream" if doc.stream else "application/json"
    schema = {"type": "string"} if doc.stream else {"type": "object"}
    success = {"description": doc.success_description, "content": {content_type: {"schema": schema}}}
    responses: dict[str, Any] = {str(doc.success): success}
    for status, description in doc.extra_statuses.items():
        responses[str(status)] = {"description": description}
    statuses = set(doc.errors) | (set(COMMON_ERRORS) if doc.body is not None else {503})
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": STATUS_WORDS[status],
            "content": {"application/json": {"schema": ERROR}},
        }
    return responses


@bp.get("/openapi.json")
@documented(description="the OpenAPI 3.1 document")
def openapi_json() -> Response:
    """This document: every route of the API, derived from the routes themselves."""
    return jsonify(document(current_app))


def docs_blueprint() -> Blueprint:
    """Swagger UI 5 (OpenAPI 3.1) at /docs, its files served from the flask-swagger-ui package."""
    return get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "TorchWeave"})
