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
from api.token_limits import count_prompt_tokens
from shared import bus, keys
from shared.messages import GenerationRequest, WorkerInfo


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


def check_limits(body: SubmitBody, model: str, workers: list[WorkerInfo]) -> None:
    """429 when the model's queue is full; 400 when the prompt and max_new_tokens cannot fit its context."""
    s = context.settings()
    waiting = bus.num_waiting(context.redis_client(), model)
    if waiting >= s.max_queued:
        raise ApiError(
            429,
            f"{waiting} requests already wait for {model!r} (MAX_QUEUED is {s.max_queued}); retry later",
            code="queue_full",
            headers={"Retry-After": "5"},
        )
    contexts = [w.max_model_len for w in workers if w.model == model]
    if not contexts:
        return  # no worker to ask yet: the worker that takes it refuses what cannot fit
    max_len = min(contexts)
    if body.max_new_tokens >= max_len:
        raise ApiError(
            400,
            f"max_new_tokens: at most {max_len - 1} for {model!r} (its context is {max_len})",
            param="max_new_tokens",
            code="too_large",
        )
    n_prompt = count_prompt_tokens(model, body.prompt, s)
    if n_prompt is not None and n_prompt + body.max_new_tokens > max_len:
        raise ApiError(
            400,
            f"prompt: {n_prompt} tokens; with max_new_tokens {body.max_new_tokens} that exceeds "
            f"the context of {max_len} (at most {max_len - body.max_new_tokens} prompt tokens)",
            param="prompt",
            code="context_length_exceeded",
        )


def submit(body: SubmitBody, task_name: str = keys.GENERATE_TASK) -> GenerationRequest:
    """Store the request (queued) and enqueue its id by task name; returns what was stored."""
    model = body.model or context.settings().model
    workers = bus.list_workers(context.redis_client())
    if model != context.settings().model and model not in {w.model for w in workers}:
        raise ApiError(404, f"model {model!r} is not served here", param="model", code="model_not_found")
    check_limits(body, model, workers)
    gen = GenerationRequest(
        request_id=uuid.uuid4().hex,
        model=model,
        prompt=body.prompt,
        params=body.sampling(),
        created_at=time.time(),
        cancel_on_disconnect=body.cancel_on_disconnect,
        timeout_s=body.timeout,
    )
    bus.save_request(context.redis_client(), gen, context.settings().stream_ttl_s)
    context.celery().send_task(task_name, args=[gen.request_id], queue=keys.queue_name(model))
    return gen
