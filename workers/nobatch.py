"""The baseline that batching is measured against: one request alone through HF `model.generate`."""

from __future__ import annotations

import time
from typing import Any

import torch

from shared import bus, lifecycle
from shared.messages import (
    DoneEvent,
    FinishReason,
    GenerationRequest,
    RequestState,
    RequestStatus,
    SamplingParams,
    TokenEvent,
    Usage,
)
from workers import chat
from workers.service import EngineService
from workers.text_output import TextOutput


def generation_kwargs(params: SamplingParams) -> dict[str, Any]:
    """HF generate's arguments for these sampling params."""
    kwargs: dict[str, Any] = {"do_sample": False}
    if params.temperature > 0:
        kwargs = {
            "do_sample": True,
            "temperature": params.temperature,
            "top_k": params.top_k or None,
            "top_p": params.top_p,
        }
    if params.ignore_eos:
        kwargs["eos_token_id"] = None  # an explicit None overrides the model's own EOS
    return kwargs


def generate_alone(service: EngineService, request_id: str) -> None:
    """Generate a stored request with no batching, holding the model so nothing else runs meanwhile.

    The whole text goes out as one token event, then the done event, as on any stream.
    """
    found = bus.load_request(service.redis, request_id)
    if found is None:
        return
    with service.holding(found[0]) as claimed:
        if claimed:  # on the engine's own thread, between steps: nothing else uses the model meanwhile
            service.call_in_loop(lambda: _generate(service, found[0]))


def _generate(service: EngineService, request: GenerationRequest) -> None:
    request_id = request.request_id
    loaded, params = service.loaded, request.params
    prompt_ids = chat.prompt_ids(loaded.tokenizer, request)
    room = service.max_model_len - len(prompt_ids)
    max_new = min(params.max_new_tokens, room)
    started = time.time()
    with torch.inference_mode():
        if room <= 0:
            new_ids: list[int] = []
        else:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            ids = torch.tensor([prompt_ids], device=loaded.device)
            out = loaded.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new,
                pad_token_id=loaded.tokenizer.pad_token_id,
                **generation_kwargs(params),
            )
            new_ids = out[0, len(prompt_ids) :].tolist()
    text_output = TextOutput(loaded.tokenizer, params.stop)
    text = "".join(text_output.push(t) for t in new_ids) + text_output.finish()
    eos = loaded.tokenizer.eos_token_id
    stopped = text_output.stopped or (not params.ignore_eos and bool(new_ids) and new_ids[-1] == eos)
    reason = FinishReason.STOP if stopped else FinishReason.LENGTH
    usage = Usage(
        prompt_tokens=len(prompt_ids),
        completion_tokens=len(new_ids),
        total_tokens=len(prompt_ids) + len(new_ids),
    )
    now = time.time()
    pipe = service.redis.pipeline(transaction=False)
    index = 0
    if text:
        bus.append_event(pipe, request_id, TokenEvent(index=0, text=text))
        index = 1
    bus.append_event(pipe, request_id, DoneEvent(index=index, finish_reason=reason, usage=usage))
    bus.update_state(
        pipe,
        request_id,
        RequestState(
            status=RequestStatus.FINISHED,
            worker_id=service.worker_id,
            started_at=started,
            first_token_at=now,
            finished_at=now,
            finish_reason=reason,
            usage=usage,
            largest_batch=1,
        ),
    )
    bus.expire_request(pipe, request_id, service.settings.stream_ttl_s)
    lifecycle.release(pipe, request_id)
    pipe.execute()
