"""Turn validated bodies into stored, queued requests: resolve the model, check the limits, charge the key,
then admit every request of a submission at once (or none) and enqueue their ids on the model's queue."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from api import context
from api.auth.principal import current
from api.errors import ApiError
from api.generation import charges
from api.generation.grammar_check import check_grammar
from api.generation.limits import Choice, check_context, first_of_each_prompt
from api.generation.schemas import SubmitBody
from api.models import catalog
from shared import admission, fleet, keys, logs, timeline
from shared.messages import GenerationRequest, WorkerInfo

log = logging.getLogger(__name__)


def resolve_model(model: str | None) -> tuple[str, list[WorkerInfo]]:
    """The model a request names (or the default), and the live workers.

    A model no worker serves (or whose every worker was told to unload it) queues only while a load of
    it is under way, or with AUTOLOAD=1 (the least recently used worker switches to it); otherwise 404.
    """
    s, r = context.settings(), context.redis_client()
    name = model or s.model
    workers = fleet.list_workers(r)
    serving = [w for w in workers if w.model == name and w.state != "idle"]
    if serving:
        states = fleet.states_of(r, name)
        if not all(fleet.is_unloading(w, states) for w in serving):
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


@dataclass(frozen=True)
class Submission:
    """The requests of one submission, and the most tokens each may use (for its key's budget)."""

    gens: list[GenerationRequest]
    tokens: list[int]


def prepare(
    model: str | None,
    choices: list[Choice],
    *,
    cancel_on_disconnect: bool = False,
    timeout_s: float | None = None,
    schema_param: str = "json_schema",
) -> Submission:
    """New requests for the model, one per choice, each checked against its context; nothing is stored.
    400 past MAX_CHOICES generations, before any other work; the generations count against the key's
    requests per minute before their prompts are tokenized. A JSON schema (the same for every choice)
    is tried on the model's tokenizer; a 400 naming `schema_param` when it fails there."""
    s = context.settings()
    if len(choices) > s.max_choices:
        raise ApiError(
            400,
            f"{len(choices)} generations asked for (prompts x n); at most {s.max_choices} per request",
            code="too_many_choices",
        )
    name, workers = resolve_model(model)
    charges.count_work(len(choices))
    checked: dict[int, int] = {}
    tokens = []
    for first in first_of_each_prompt(choices):
        if first not in checked:
            checked[first] = check_context(name, choices[first], workers)
        tokens.append(checked[first])
    check_grammar(name, choices[0].params.json_schema if choices else None, schema_param)
    now, owner = time.time(), current().owner
    gens = [
        GenerationRequest(
            request_id=uuid.uuid4().hex,
            model=name,
            prompt=choice.prompt,
            messages=choice.messages,
            prompt_ids=choice.prompt_ids,
            tools=choice.tools,
            params=choice.params,
            created_at=now,
            cancel_on_disconnect=cancel_on_disconnect,
            timeout_s=timeout_s,
            owner=owner,
        )
        for choice in choices
    ]
    return Submission(gens, tokens)


def enqueue(submission: Submission, task_name: str = keys.GENERATE_TASK) -> list[GenerationRequest]:
    """Charge the key, admit every request in one atomic step, then send their tasks (the task id is
    the request id, so Flower's task page is the request's). Returns the requests as stored.

    All or nothing: 429 (nothing stored, no tokens charged) when the model's queue has no room for all
    of them, or when the key already holds its share of the queue (shared/admission.py). If sending a
    task fails after that, the request is not lost: it is sent again (REDISPATCH_AFTER). Each task's
    priority is its rank among its key's waiting requests.
    """
    s = context.settings()
    gens = charges.charge(submission.gens, submission.tokens)
    model = gens[0].model
    priorities = admission.admit(context.redis_client(), gens, s.stream_ttl_s, max_queued=s.max_queued)
    if isinstance(priorities, admission.Refusal):
        charges.refund_all(gens)
        raise _queue_refusal(priorities, len(gens), model, s.max_queued)
    pipe = context.redis_client().pipeline(transaction=False)
    for gen, priority in zip(gens, priorities, strict=True):
        timeline.record(pipe, gen.request_id, "submitted", s.stream_ttl_s, model=model, priority=priority)
    pipe.execute()
    celery = context.celery()
    for gen, priority in zip(gens, priorities, strict=True):
        celery.send_task(
            task_name,
            args=[gen.request_id],
            task_id=gen.request_id,
            queue=keys.queue_name(model),
            priority=priority,
        )
        log.info("queued %s for %s (priority %d)", gen.request_id, model, priority,
                 extra=logs.about(gen.request_id))  # fmt: skip
    if len(gens) == 1:  # the rest of this HTTP request's lines (the access log's too) are about it
        logs.current_request_id.set(gens[0].request_id)
    return gens


def _queue_refusal(refusal: admission.Refusal, n: int, model: str, max_queued: int) -> ApiError:
    """The 429 for a submission the queue did not admit, saying which limit refused it."""
    why = {
        "full": f"(MAX_QUEUED is {max_queued})",
        "share": f"while other keys wait, this key may hold {refusal.limit} of the MAX_QUEUED {max_queued}",
        "reserve": f"the last {refusal.limit} places of MAX_QUEUED {max_queued} are kept for keys with "
        "nothing waiting",
    }[refusal.reason]
    return ApiError(
        429,
        f"no room for {n} more requests for {model!r}: {why}; nothing was queued; retry later",
        code="queue_full",
        headers={"Retry-After": "5"},
    )


def submit(body: SubmitBody, task_name: str = keys.GENERATE_TASK) -> GenerationRequest:
    """Submit a /v1/requests-style body."""
    submission = prepare(
        body.model,
        [Choice(body.sampling(), prompt=body.prompt)],
        cancel_on_disconnect=body.cancel_on_disconnect,
        timeout_s=body.timeout,
    )
    [gen] = enqueue(submission, task_name)
    return gen
