"""Turn validated bodies into stored, queued requests: resolve the model, check the limits, then admit
every request of a submission at once (or none) and enqueue their ids on the model's queue."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from api import context
from api.errors import ApiError
from api.generation.schemas import SubmitBody
from api.generation.token_limits import prompt_counter
from api.models import catalog
from shared import admission, fleet, keys
from shared.messages import ChatMessage, GenerationRequest, SamplingParams, WorkerInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    """One generation of a submission: its sampling and its prompt (text or chat messages)."""

    params: SamplingParams
    prompt: str = ""
    messages: list[ChatMessage] | None = None


def context_of(model: str, workers: list[WorkerInfo]) -> int | None:
    """The smallest context among the ready workers of a model; None when none is ready yet."""
    contexts = [
        w.max_model_len for w in workers if w.model == model and w.state == "ready" and w.max_model_len
    ]
    return min(contexts) if contexts else None


def check_context(model: str, choice: Choice, workers: list[WorkerInfo]) -> None:
    """400 when max_new_tokens, or the prompt (chat template included) with it, cannot fit the context."""
    s = context.settings()
    max_new_tokens, messages = choice.params.max_new_tokens, choice.messages
    if max_new_tokens > s.max_new_tokens_limit:
        raise ApiError(
            400, f"max_new_tokens: at most {s.max_new_tokens_limit}", param="max_new_tokens", code="too_large"
        )
    max_len = context_of(model, workers)
    if max_len is None:
        return  # no worker to ask yet: the worker that takes it refuses what cannot fit
    if max_new_tokens >= max_len:
        raise ApiError(
            400,
            f"max_new_tokens: at most {max_len - 1} for {model!r} (its context is {max_len})",
            param="max_new_tokens",
            code="too_large",
        )
    counter = prompt_counter(model, s)
    if counter is None:
        return
    n_prompt = counter.count_chat(messages) if messages else counter.count(choice.prompt)
    if n_prompt is not None and n_prompt + max_new_tokens > max_len:
        param = "messages" if messages else "prompt"
        raise ApiError(
            400,
            f"{param}: {n_prompt} tokens; with max_new_tokens {max_new_tokens} that exceeds "
            f"the context of {max_len} (at most {max_len - max_new_tokens} prompt tokens)",
            param=param,
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


def prepare(
    model: str | None,
    choices: list[Choice],
    *,
    cancel_on_disconnect: bool = False,
    timeout_s: float | None = None,
) -> list[GenerationRequest]:
    """New requests for the model, one per choice, each checked against its context; nothing is stored.
    400 past MAX_CHOICES generations, before any other work."""
    s = context.settings()
    if len(choices) > s.max_choices:
        raise ApiError(
            400,
            f"{len(choices)} generations asked for (prompts x n); at most {s.max_choices} per request",
            code="too_many_choices",
        )
    name, workers = resolve_model(model)
    for choice in choices:
        check_context(name, choice, workers)
    now = time.time()
    return [
        GenerationRequest(
            request_id=uuid.uuid4().hex,
            model=name,
            prompt=choice.prompt,
            messages=choice.messages,
            params=choice.params,
            created_at=now,
            cancel_on_disconnect=cancel_on_disconnect,
            timeout_s=timeout_s,
        )
        for choice in choices
    ]


def enqueue(gens: list[GenerationRequest], task_name: str = keys.GENERATE_TASK) -> None:
    """Admit every request of one submission in one atomic step, then send their tasks.

    All or nothing: 429 (nothing stored) when the model's queue has no room for all of them. If
    sending a task fails after that, the request is not lost: it is sent again (REDISPATCH_AFTER).
    """
    s = context.settings()
    model = gens[0].model
    if not admission.admit(context.redis_client(), gens, s.stream_ttl_s, max_queued=s.max_queued):
        raise ApiError(
            429,
            f"no room for {len(gens)} more requests for {model!r} (MAX_QUEUED is {s.max_queued}); "
            "nothing was queued; retry later",
            code="queue_full",
            headers={"Retry-After": "5"},
        )
    celery = context.celery()
    for gen in gens:
        celery.send_task(task_name, args=[gen.request_id], queue=keys.queue_name(model))


def submit(body: SubmitBody, task_name: str = keys.GENERATE_TASK) -> GenerationRequest:
    """Submit a /v1/requests-style body."""
    [gen] = prepare(
        body.model,
        [Choice(body.sampling(), prompt=body.prompt)],
        cancel_on_disconnect=body.cancel_on_disconnect,
        timeout_s=body.timeout,
    )
    enqueue([gen], task_name)
    return gen
