"""Validate a generation body, store the request in Redis, and enqueue its id on its model's queue."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from flask import request
from pydantic import ValidationError

from api import context
from api.errors import ApiError, from_validation_error
from api.schemas import SubmitBody
from shared import bus, keys
from shared.messages import GenerationRequest


def _reject_constant(name: str) -> Any:
    raise ApiError(400, f"{name} is not valid JSON", code="invalid_json")


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ApiError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return body


def parse_submit_body() -> SubmitBody:
    try:
        body = SubmitBody.model_validate(read_json_object())
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    limit = context.settings().max_new_tokens_limit
    if body.max_new_tokens > limit:
        raise ApiError(400, f"max_new_tokens: at most {limit}", param="max_new_tokens", code="too_large")
    return body


def known_models() -> set[str]:
    """The configured model and every model a live worker serves."""
    workers = bus.list_workers(context.redis_client())
    return {context.settings().model} | {w.model for w in workers}


def submit(body: SubmitBody, task_name: str = keys.GENERATE_TASK) -> GenerationRequest:
    """Store the request (queued) and enqueue its id by task name; returns what was stored."""
    model = body.model or context.settings().model
    if model not in known_models():
        raise ApiError(404, f"model {model!r} is not served here", param="model", code="model_not_found")
    gen = GenerationRequest(
        request_id=uuid.uuid4().hex,
        model=model,
        prompt=body.prompt,
        params=body.sampling(),
        created_at=time.time(),
        cancel_on_disconnect=body.cancel_on_disconnect,
    )
    bus.save_request(context.redis_client(), gen, context.settings().stream_ttl_s)
    context.celery().send_task(task_name, args=[gen.request_id], queue=keys.queue_name(model))
    return gen
