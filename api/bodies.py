"""Request bodies: read the JSON object, then validate it with a pydantic model; a 400 naming the fault."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from api.errors import ApiError, from_validation_error

Body = TypeVar("Body", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    raise ApiError(400, f"{name} is not valid JSON", code="invalid_json")


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object; 415 unless it is sent as application/json, 400 that says
    what is wrong with it otherwise."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        sent = request.mimetype or "no Content-Type"
        raise ApiError(
            415, f"send the body as JSON with Content-Type: application/json (got {sent})",
            code="unsupported_media_type",
        )  # fmt: skip
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # "\ud800" escapes decode to lone surrogates, which no UTF-8 store takes
        raise ApiError(
            400,
            "the body contains a lone surrogate (\\uD800-\\uDFFF): not valid Unicode text",
            code="invalid_json",
        ) from None
    return body


def parse_body(model: type[Body]) -> Body:
    """The JSON body validated by a pydantic model; a 400 naming the first field at fault ("X is not
    supported" for a field the model does not have)."""
    try:
        return model.model_validate(read_json_object())
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "extra_forbidden":  # a field this server does not implement, by its name
            param = ".".join(str(p) for p in first["loc"])
            raise ApiError(400, f"{param} is not supported", param=param, code="not_supported") from None
        raise from_validation_error(exc) from None
