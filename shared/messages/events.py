"""The events of a request's token stream: tokens, then exactly one done or error event."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from shared.messages.base import Message
from shared.messages.generation import FinishReason, Usage


class TopLogprob(Message):
    token_id: int
    token: str
    logprob: float


class TokenLogprob(Message):
    """One generated token with its log-probability and, when asked for, the most likely alternatives."""

    token_id: int
    token: str
    logprob: float
    top: list[TopLogprob] = Field(default_factory=list)


class PromptTokenLogprob(Message):
    """One prompt token with its log-probability given the tokens before it (None for the first)."""

    token_id: int
    token: str
    logprob: float | None
    top: list[TopLogprob] = Field(default_factory=list)


class TokenEvent(Message):
    """New text of one request; `index` counts events from 0 and is the stream entry's id."""

    v: Literal[1] = 1
    type: Literal["token"] = "token"
    index: int = Field(ge=0)
    text: str
    token_ids: list[int] = Field(default_factory=list)  # the tokens this text completes (to resume from)
    logprobs: list[TokenLogprob] | None = None  # one per token id, when the request asked for them
    at: float | None = None  # when the worker wrote it (the timeline's tokens over time)
    prompt_logprobs: list[PromptTokenLogprob] | None = None  # on the first event, when asked for (echo)
    num_prompt_tokens: int | None = None  # on the first event (usage on every chunk)


class DoneEvent(Message):
    """The last event of a request that ended normally (or was cancelled)."""

    v: Literal[1] = 1
    type: Literal["done"] = "done"
    index: int = Field(ge=0)
    finish_reason: FinishReason
    usage: Usage


class ErrorEvent(Message):
    """The last event of a request that failed; `message` says why."""

    v: Literal[1] = 1
    type: Literal["error"] = "error"
    index: int = Field(ge=0)
    message: str


StreamEvent = Annotated[TokenEvent | DoneEvent | ErrorEvent, Field(discriminator="type")]
STREAM_EVENT: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)
