"""The baseline that batching is measured against: one request alone through HF `model.generate`."""

from __future__ import annotations

import time
from typing import Any

import torch

from shared import bus
from shared.messages import FinishReason, GenerationRequest, SamplingParams, Usage
from workers import chat
from workers.request_stream import ActiveRequest, StreamWrites
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
    stored = bus.load_request(service.redis, request_id)
    if stored is None:
        return
    with service.holding(stored.request) as epoch:
        if epoch:  # on the engine's own thread, between steps: nothing else uses the model meanwhile
            service.call_in_loop(lambda: _generate(service, stored.request, epoch))


def _generate(service: EngineService, request: GenerationRequest, epoch: int) -> None:
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
    active = ActiveRequest(request, prompt_ids, text_output, epoch=epoch)
    writes = StreamWrites(service.worker_id, service.settings.stream_ttl_s)
    now = time.time()
    writes.start(active, started_at=started, first_token_at=now)
    writes.text(active, text)
    writes.end(active, reason, Usage.of(len(prompt_ids), len(new_ids)), now, largest_batch=1)
    writes.apply(service.redis, service.loop.keep_trying)
