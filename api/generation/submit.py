"""Validate a generation body, store the request in Redis, and enqueue its id on its model's queue."""

from __future__ import annotations

import time
import uuid

from api import context
from api.errors import ApiError
from api.generation.schemas import SubmitBody
from api.generation.token_limits import count_prompt_tokens
from api.models import catalog
from shared import bus, fleet, keys
from shared.messages import ChatMessage, GenerationRequest, SamplingParams, WorkerInfo


def check_limits(model: str, prompt: str, max_new_tokens: int, workers: list[WorkerInfo]) -> None:
    """429 when the model's queue is full; 400 when the prompt and max_new_tokens cannot fit its context."""
    s = context.settings()
    if max_new_tokens > s.max_new_tokens_limit:
        raise ApiError(
            400, f"max_new_tokens: at most {s.max_new_tokens_limit}", param="max_new_tokens", code="too_large"
        )
    waiting = bus.num_waiting(context.redis_client(), model)
    if waiting >= s.max_queued:
        raise ApiError(
            429,
            f"{waiting} requests already wait for {model!r} (MAX_QUEUED is {s.max_queued}); retry later",
            code="queue_full",
            headers={"Retry-After": "5"},
        )
    contexts = [
        w.max_model_len for w in workers if w.model == model and w.state == "ready" and w.max_model_len
    ]
    if not contexts:
        return  # no worker to ask yet: the worker that takes it refuses what cannot fit
    max_len = min(contexts)
    if max_new_tokens >= max_len:
        raise ApiError(
            400,
            f"max_new_tokens: at most {max_len - 1} for {model!r} (its context is {max_len})",
            param="max_new_tokens",
            code="too_large",
        )
    n_prompt = count_prompt_tokens(model, prompt, s) if prompt else None
    if n_prompt is not None and n_prompt + max_new_tokens > max_len:
        raise ApiError(
            400,
            f"prompt: {n_prompt} tokens; with max_new_tokens {max_new_tokens} that exceeds "
            f"the context of {max_len} (at most {max_len - max_new_tokens} prompt tokens)",
            param="prompt",
            code="context_length_exceeded",
        )


def resolve_model(model: str | None) -> tuple[str, list[WorkerInfo]]:
    """The model a request names (or the default), and the live workers.

    A model no worker serves queues only while a load of it is under way, or with AUTOLOAD=1
    (the least recently used worker switches to it); otherwise 404.
    """
    s, r = context.settings(), context.redis_client()
    name = model or s.model
    workers = fleet.list_workers(r)
    if any(w.model == name and w.state != "idle" for w in workers):
        return name, workers
    if name != s.model:
        name = catalog.checked_name(name)
    if catalog.state_of(r, name) in ("ready", "loading"):  # heartbeats lag the load's own record
        return name, workers
    if s.autoload and any(w.node for w in workers):
        catalog.start_load(name, 1)
        return name, workers
    if name == s.model:  # the default model: its workers may still be starting
        return name, workers
    raise ApiError(
        404,
        f"model {name!r} is not served here; load it with POST /v1/models/load",
        param="model",
        code="model_not_found",
    )


def submit_generation(
    model: str | None,
    params: SamplingParams,
    *,
    prompt: str = "",
    messages: list[ChatMessage] | None = None,
    cancel_on_disconnect: bool = False,
    timeout_s: float | None = None,
    task_name: str = keys.GENERATE_TASK,
) -> GenerationRequest:
    """Check the limits, store the request (queued) and enqueue its id by task name."""
    name, workers = resolve_model(model)
    check_limits(name, prompt, params.max_new_tokens, workers)
    gen = GenerationRequest(
        request_id=uuid.uuid4().hex,
        model=name,
        prompt=prompt,
        messages=messages,
        params=params,
        created_at=time.time(),
        cancel_on_disconnect=cancel_on_disconnect,
        timeout_s=timeout_s,
    )
    bus.save_request(context.redis_client(), gen, context.settings().stream_ttl_s)
    context.celery().send_task(task_name, args=[gen.request_id], queue=keys.queue_name(name))
    return gen


def submit(body: SubmitBody, task_name: str = keys.GENERATE_TASK) -> GenerationRequest:
    """Submit a /v1/requests-style body."""
    return submit_generation(
        body.model,
        body.sampling(),
        prompt=body.prompt,
        cancel_on_disconnect=body.cancel_on_disconnect,
        timeout_s=body.timeout,
        task_name=task_name,
    )
