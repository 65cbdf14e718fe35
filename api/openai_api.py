"""The OpenAI-compatible API: /v1/completions and /v1/chat/completions (/v1/models is in api/models.py).

Each choice is one request on the same queue, engine and token stream as /v1/requests, so a
streamed OpenAI request is also resumable: its request ids come back in `X-Request-Id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, stream_with_context

from api import context
from api.errors import ApiError
from api.openai_format import Choice, chat_logprobs, completion_logprobs, finish_reason, usage
from api.openai_schemas import ChatCompletionRequest, CompletionRequest
from api.relay import SSE_HEADERS, follow_many
from api.submit import parse_body, submit_generation
from shared import lifecycle
from shared.messages import GenerationRequest, StreamEvent, TokenEvent

bp = Blueprint("openai", __name__, url_prefix="/v1")


@bp.post("/completions")
def completions() -> Response:
    """OpenAI completions, streaming or not; n choices per prompt."""
    req = parse_body(CompletionRequest)
    prompts = req.prompts()
    gens = [
        submit_generation(req.model, req.sampling(i), prompt=p, cancel_on_disconnect=req.stream)
        for p in prompts
        for i in range(req.n)
    ]
    return OpenAIResponse(req, gens, chat=False, num_prompts=len(prompts)).respond()


@bp.post("/chat/completions")
def chat_completions() -> Response:
    """OpenAI chat completions, streaming or not; messages rendered with the model's chat template."""
    req = parse_body(ChatCompletionRequest)
    messages = [m.to_message() for m in req.messages]
    gens = [
        submit_generation(req.model, req.sampling(i), messages=messages, cancel_on_disconnect=req.stream)
        for i in range(req.n)
    ]
    return OpenAIResponse(req, gens, chat=True, num_prompts=1).respond()


class OpenAIResponse:
    """Follows the choices' streams and answers in OpenAI's shapes."""

    def __init__(
        self,
        req: CompletionRequest | ChatCompletionRequest,
        gens: list[GenerationRequest],
        chat: bool,
        num_prompts: int,
    ) -> None:
        self.req, self.gens, self.chat, self.num_prompts = req, gens, chat, num_prompts
        self.id = ("chatcmpl-" if chat else "cmpl-") + gens[0].request_id
        self.created = int(gens[0].created_at)
        self.choices = [Choice() for _ in gens]
        self.wants_logprobs = req.num_logprobs() is not None
        self.redis, self.ttl_s, self.hub = (
            context.redis_client(),
            context.settings().stream_ttl_s,
            context.hub(),
        )

    def respond(self) -> Response:
        headers = {"X-Request-Id": ",".join(g.request_id for g in self.gens)}
        if self.req.stream:
            body = stream_with_context(self._stream())
            return Response(body, mimetype="text/event-stream", headers={**SSE_HEADERS, **headers})
        for tag, event in self._events():
            self._record(tag, event)
        response = jsonify(self._whole())
        response.headers.update(headers)
        return response

    def _events(self) -> Iterator[tuple[int, StreamEvent]]:
        """Every choice's events, merged; a failed choice fails the whole response."""
        for tagged in follow_many(self.hub, [g.request_id for g in self.gens]):
            if tagged is None:
                continue
            tag, event = tagged
            if event.type == "error":
                raise ApiError(500, f"generation failed: {event.message}", code="generation_failed")
            yield tag, event

    def _record(self, tag: int, event: StreamEvent) -> Choice:
        choice = self.choices[tag]
        if isinstance(event, TokenEvent):
            choice.text += event.text
            choice.logprobs.extend(event.logprobs or [])
        elif event.type == "done":
            choice.finish_reason = finish_reason(event.finish_reason)
            choice.prompt_tokens = event.usage.prompt_tokens
            choice.completion_tokens = event.usage.completion_tokens
        return choice

    def _whole(self) -> dict[str, Any]:
        choices = []
        for i, c in enumerate(self.choices):
            if self.chat:
                logprobs = chat_logprobs(c.logprobs) if self.wants_logprobs else None
                choices.append(
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": c.text},
                        "logprobs": logprobs,
                        "finish_reason": c.finish_reason,
                    }
                )
            else:
                logprobs = completion_logprobs(c.logprobs) if self.wants_logprobs else None
                choices.append(
                    {"index": i, "text": c.text, "logprobs": logprobs, "finish_reason": c.finish_reason}
                )
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.req.model,
            "choices": choices,
            "usage": usage(self.choices, self.num_prompts),
        }

    def _chunk(self, choices: list[dict[str, Any]], final_usage: dict[str, int] | None = None) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.req.model,
            "choices": choices,
        }
        if self.req.include_usage:
            body["usage"] = final_usage
        return f"data: {json.dumps(body)}\n\n"

    def _choice_chunk(self, tag: int, event: StreamEvent, choice: Choice, first: bool) -> dict[str, Any]:
        text = event.text if isinstance(event, TokenEvent) else ""
        new_logprobs = (event.logprobs or []) if isinstance(event, TokenEvent) else []
        reason = choice.finish_reason if event.type == "done" else None
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            if event.type == "done" and not first:
                delta = {}
            logprobs = chat_logprobs(new_logprobs) if self.wants_logprobs and new_logprobs else None
            return {"index": tag, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
        offset = len(choice.text) - len(text)
        logprobs = completion_logprobs(new_logprobs, offset) if self.wants_logprobs and new_logprobs else None
        return {"index": tag, "text": text, "logprobs": logprobs, "finish_reason": reason}

    def _stream(self) -> Iterator[str]:
        started = [False] * len(self.gens)
        finished = False
        try:
            yield ": stream open\n\n"
            for tag, event in self._events():
                choice = self._record(tag, event)
                yield self._chunk([self._choice_chunk(tag, event, choice, first=not started[tag])])
                started[tag] = True
            if self.req.include_usage:
                yield self._chunk([], usage(self.choices, self.num_prompts))
            finished = True
            yield "data: [DONE]\n\n"
        except ApiError as exc:  # mid-stream: the error in OpenAI's shape, then the end
            finished = True
            error = {"message": exc.message, "type": "server_error", "param": exc.param, "code": exc.code}
            yield f"data: {json.dumps({'error': error})}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if not finished:  # the client left: a one-shot stream cancels its requests
                for gen in self.gens:
                    try:
                        lifecycle.cancel(self.redis, gen, self.ttl_s)
                    except redis.RedisError:
                        break
