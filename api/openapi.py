"""The OpenAPI 3.1 document, generated from the pydantic models that validate each body, and Swagger UI
at /docs, served from the flask-swagger-ui package (no CDN: nothing outside loads)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, jsonify
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.openai_schemas import ChatCompletionRequest, CompletionRequest
from api.schemas import LoadModelBody, SubmitBody, UnloadModelBody

bp = Blueprint("openapi", __name__)
REF = "#/components/schemas/{model}"
ERROR = {"$ref": "#/components/schemas/Error"}


def _responses(ok: int, description: str, stream: bool = False) -> dict[str, Any]:
    content = (
        {"text/event-stream": {"schema": {"type": "string"}}}
        if stream
        else {"application/json": {"schema": {"type": "object"}}}
    )
    responses: dict[str, Any] = {str(ok): {"description": description, "content": content}}
    for status, why in [
        (400, "invalid input, naming the field"),
        (404, "unknown model or request"),
        (413, "body too large"),
        (429, "queue full; see Retry-After"),
        (503, "Redis unavailable"),
    ]:
        responses[str(status)] = {"description": why, "content": {"application/json": {"schema": ERROR}}}
    return responses


def _body(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": REF.format(model=model.__name__)}
    return {"required": True, "content": {"application/json": {"schema": ref}}}


def _request_id_param() -> list[dict[str, Any]]:
    return [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}]


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The whole OpenAPI document; the body schemas are exactly what the endpoints validate with."""
    models: list[type[BaseModel]] = [
        SubmitBody,
        CompletionRequest,
        ChatCompletionRequest,
        LoadModelBody,
        UnloadModelBody,
    ]
    _, schemas = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    components = schemas.get("$defs", {})
    components["Error"] = {
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
    get_ok = {
        "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
        "404": {"description": "unknown or expired", "content": {"application/json": {"schema": ERROR}}},
    }
    paths: dict[str, Any] = {
        "/v1/requests": {
            "post": {
                "summary": "Submit a prompt; 202 with its id and stream URLs",
                "requestBody": _body(SubmitBody),
                "responses": _responses(202, "accepted"),
            }
        },
        "/v1/requests/{request_id}": {
            "get": {
                "summary": "Status, text so far, usage and timings",
                "parameters": _request_id_param(),
                "responses": get_ok,
            },
            "delete": {
                "summary": "Cancel",
                "parameters": _request_id_param(),
                "responses": {
                    "200": {"description": "cancelled while queued"},
                    "202": {"description": "cancelling"},
                    "404": {"description": "unknown", "content": {"application/json": {"schema": ERROR}}},
                    "409": {
                        "description": "already ended",
                        "content": {"application/json": {"schema": ERROR}},
                    },
                },
            },
        },
        "/v1/generate": {
            "post": {
                "summary": "One-shot SSE stream",
                "requestBody": _body(SubmitBody),
                "responses": _responses(200, "SSE: ttft, token events, done", stream=True),
            }
        },
        "/v1/generate_nobatch": {
            "post": {
                "summary": "Generate alone (the no-batching baseline)",
                "requestBody": _body(SubmitBody),
                "responses": _responses(200, "text"),
            }
        },
        "/v1/completions": {
            "post": {
                "summary": "OpenAI completions",
                "requestBody": _body(CompletionRequest),
                "responses": _responses(200, "completion, or SSE chunks when stream"),
            }
        },
        "/v1/chat/completions": {
            "post": {
                "summary": "OpenAI chat completions",
                "requestBody": _body(ChatCompletionRequest),
                "responses": _responses(200, "chat completion, or SSE chunks"),
            }
        },
        "/v1/models": {
            "get": {
                "summary": "Known models: state, load progress, workers, queue (OpenAI shape)",
                "responses": get_ok,
            }
        },
        "/v1/models/load": {
            "post": {
                "summary": "Make workers load a model (Hub id or a path under MODEL_DIR)",
                "requestBody": _body(LoadModelBody),
                "responses": {
                    **_responses(202, "loading: follow GET /v1/models or /v1/models/events"),
                    "409": {
                        "description": "no worker free",
                        "content": {"application/json": {"schema": ERROR}},
                    },
                },
            }
        },
        "/v1/models/unload": {
            "post": {
                "summary": "Make the workers serving a model unload it",
                "requestBody": _body(UnloadModelBody),
                "responses": {
                    **_responses(202, "unloading"),
                    "404": {"description": "not served", "content": {"application/json": {"schema": ERROR}}},
                },
            }
        },
        "/v1/models/events": {
            "get": {
                "summary": "SSE: each model's state on each worker, then each change (Last-Event-ID)",
                "responses": {"200": {"description": "text/event-stream of `model` events"}},
            }
        },
        "/v1/models/search": {
            "get": {
                "summary": "Search the Hugging Face Hub",
                "parameters": [
                    {
                        "name": "q",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                ],
                "responses": {
                    "200": {"description": "matching models"},
                    "503": {
                        "description": "the Hub is unreachable",
                        "content": {"application/json": {"schema": ERROR}},
                    },
                },
            }
        },
        "/status": {"get": {"summary": "Workers, models and queue depth at a glance", "responses": get_ok}},
        "/v1/workers": {"get": {"summary": "Live workers", "responses": get_ok}},
        "/health": {
            "get": {
                "summary": "ok while Redis answers and a worker lives",
                "responses": {"200": {"description": "ok"}, "503": {"description": "what is missing"}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TorchWeave",
            "version": "1",
            "description": "A distributed LLM inference server with resumable token streams.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())


def docs_blueprint() -> Blueprint:
    """Swagger UI 5 (OpenAPI 3.1) at /docs, its files served from the flask-swagger-ui package."""
    return get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "TorchWeave"})
