"""Following the choices of an OpenAI request and answering in OpenAI's shapes, whole or streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis
from flask import Response, jsonify

from api import context
from api.errors import ApiError
from api.openai.format import Choice, chat_logprobs, completion_logprobs, echoed_text, finish_reason, usage
from api.openai.schemas import ChatCompletionRequest, CompletionRequest
from api.openai.tools import parse_output
from api.streaming import sse
from api.streaming.relay import follow_many
from api.streaming.stopping import is_stopping
from shared import lifecycle
from shared.messages import GenerationRequest, PromptTokenLogprob, StreamEvent, TokenEvent, TokenLogprob

STOPPING = "server_stopping"


class OpenAIResponse:
    """Follows the choices' streams and answers in OpenAI's shapes."""

    def __init__(
        self,
        req: CompletionRequest | ChatCompletionRequest,
        gens: list[GenerationRequest],
        chat: bool,
        num_prompts: int,
        echoed: list[str | None] | None = None,
    ) -> None:
        """`echoed`: with echo, each choice's prompt text (None for one given as token ids)."""
        self.req, self.gens, self.chat, self.num_prompts = req, gens, chat, num_prompts
        self.echoed = echoed
        self.tool_mode = req.tool_mode if isinstance(req, ChatCompletionRequest) else "none"
        self.id = ("chatcmpl-" if chat else "cmpl-") + gens[0].request_id
        self.created = int(gens[0].created_at)
        self.choices = [Choice() for _ in gens]
        self.wants_logprobs = req.num_logprobs() is not None
        self.redis, self.ttl_s, self.fanout = (
            context.redis_client(),
            context.settings().stream_ttl_s,
            context.fanout(),
        )

    def respond(self) -> Response:
        headers = {"X-Request-Id": ",".join(g.request_id for g in self.gens)}
        if self.req.stream:
            return sse.event_stream(self._stream(), headers)
        for tag, event in self._events():
            self._record(tag, event)
        response = jsonify(self._whole())
        response.headers.update(headers)
        return response

    def _events(self) -> Iterator[tuple[int, StreamEvent]]:
        """Every choice's events, merged; a failed choice fails the whole response."""
        for tagged in follow_many(self.fanout, [g.request_id for g in self.gens]):
            if is_stopping():  # OpenAI's clients cannot resume a stream: they are told to send it again
                raise ApiError(503, "this server is stopping: send the request again", code=STOPPING)
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
            choice.completion_tokens += len(event.token_ids)
            if event.prompt_logprobs is not None:
                choice.prompt_logprobs = event.prompt_logprobs
            if event.num_prompt_tokens is not None:
                choice.prompt_tokens = event.num_prompt_tokens
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
                message, reason = self._message(c)
                choices.append(
                    {"index": i, "message": message, "logprobs": logprobs, "finish_reason": reason}
                )
            else:
                text, logprobs = self._echo(i, c) + c.text, None
                if self.wants_logprobs:
                    every: list[PromptTokenLogprob | TokenLogprob] = [*c.prompt_logprobs, *c.logprobs]
                    logprobs = completion_logprobs(every)
                choices.append(
                    {"index": i, "text": text, "logprobs": logprobs, "finish_reason": c.finish_reason}
                )
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.req.model,
            "choices": choices,
            "usage": usage(self.choices, self.num_prompts),
        }

    def _message(self, choice: Choice) -> tuple[dict[str, Any], str | None]:
        """A chat choice's message (its tool calls parsed out, when tools may be called) and finish reason."""
        if self.tool_mode == "none":
            return {"role": "assistant", "content": choice.text}, choice.finish_reason
        assert isinstance(self.req, ChatCompletionRequest)
        parsed = parse_output(choice.text, self.tool_mode, self.req.tool_choice, self.req.parallel_tool_calls)
        if not parsed.tool_calls:
            return {"role": "assistant", "content": parsed.content}, choice.finish_reason
        reason = "tool_calls" if choice.finish_reason == "stop" else choice.finish_reason
        return {"role": "assistant", "content": parsed.content, "tool_calls": parsed.tool_calls}, reason

    def _tool_chunk(self, tag: int, choice: Choice) -> dict[str, Any]:
        """With tools, a streamed chat choice comes whole in one chunk at its end (its calls parsed)."""
        message, reason = self._message(choice)
        calls = [{"index": k, **call} for k, call in enumerate(message.get("tool_calls", []))]
        delta = {
            "role": "assistant",
            "content": message["content"],
            **({"tool_calls": calls} if calls else {}),
        }
        return {"index": tag, "delta": delta, "logprobs": None, "finish_reason": reason}

    def _echo(self, tag: int, choice: Choice) -> str:
        """The prompt text that comes before a choice's completion (empty without echo)."""
        return "" if self.echoed is None else echoed_text(self.echoed[tag], choice.prompt_logprobs)

    def _chunk(self, choices: list[dict[str, Any]], final_usage: dict[str, int] | None = None) -> str:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.req.model,
            "choices": choices,
        }
        if self.req.continuous_usage:  # vLLM's continuous_usage_stats: the counts so far on every chunk
            body["usage"] = final_usage or usage(self.choices, self.num_prompts)
        elif self.req.include_usage:
            body["usage"] = final_usage
        return sse.frame(json.dumps(body))

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
        echo = self._echo(tag, choice) if first else ""
        offset = len(choice.text) - len(text) + (0 if first else len(self._echo(tag, choice)))
        lps: list[PromptTokenLogprob | TokenLogprob] = [*new_logprobs]
        if first and self.echoed is not None:
            lps = [*choice.prompt_logprobs, *lps]
        logprobs = completion_logprobs(lps, offset) if self.wants_logprobs and lps else None
        return {"index": tag, "text": echo + text, "logprobs": logprobs, "finish_reason": reason}

    def _stream(self) -> Iterator[str]:
        started = [False] * len(self.gens)
        finished = False
        try:
            yield sse.comment("stream open")
            for tag, event in self._events():
                choice = self._record(tag, event)
                if self.tool_mode != "none":
                    if event.type == "done":
                        yield self._chunk([self._tool_chunk(tag, choice)])
                    continue
                yield self._chunk([self._choice_chunk(tag, event, choice, first=not started[tag])])
                started[tag] = True
            if self.req.include_usage:
                yield self._chunk([], usage(self.choices, self.num_prompts))
            finished = True
            yield sse.frame("[DONE]")
        except ApiError as exc:  # mid-stream: the error in OpenAI's shape, then the end
            finished = exc.code != STOPPING  # a request nobody will read is cancelled (below)
            error = {"message": exc.message, "type": "server_error", "param": exc.param, "code": exc.code}
            yield sse.frame(json.dumps({"error": error}))
            yield sse.frame("[DONE]")
        finally:
            if not finished:  # the client left: a one-shot stream cancels its requests
                for gen in self.gens:
                    try:
                        lifecycle.cancel(self.redis, gen, self.ttl_s)
                    except redis.RedisError:
                        break
