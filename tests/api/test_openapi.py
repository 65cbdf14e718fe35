"""The OpenAPI document is derived from the routes: every URL rule is in it, and a route without its
RouteDoc cannot be added silently."""

from __future__ import annotations

import pytest
from flask import Blueprint
from openapi_spec_validator import validate

from api import create_app
from api.openapi import UndocumentedRoute, document, documented_rules, openapi_path
from shared.settings import Settings


def test_every_url_rule_is_documented_with_a_summary() -> None:
    app = create_app(Settings())
    doc = document(app)
    validate(doc)  # raises on any departure from the OpenAPI 3.1 specification
    rules = documented_rules(app)
    assert {"/v1/requests/<request_id>/stream", "/v1/requests/<request_id>/ws", "/model"} <= {
        r.rule for r in rules
    }
    for rule in rules:
        operations = doc["paths"][openapi_path(rule)]
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert operations[method.lower()]["summary"], f"{method} {rule.rule} has no summary"


def test_a_route_without_its_doc_is_refused() -> None:
    app = create_app(Settings())
    extra = Blueprint("extra", __name__)

    @extra.get("/v1/forgotten")
    def forgotten() -> str:
        return "nobody documented me"

    app.register_blueprint(extra)
    with pytest.raises(UndocumentedRoute, match="/v1/forgotten"):
        document(app)


def test_body_schemas_are_the_validating_models() -> None:
    doc = document(create_app(Settings()))
    body = doc["paths"]["/v1/requests"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SubmitBody"}
    assert "prompt" in doc["components"]["schemas"]["SubmitBody"]["properties"]
