"""A generation request as stored in Redis: what to generate, how to sample, and its changing state."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from shared.messages.access import RateCharge
from shared.messages.base import Message


class RequestStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (RequestStatus.FINISHED, RequestStatus.CANCELLED, RequestStatus.FAILED)


class FinishReason(StrEnum):
    STOP = "stop"  # EOS token or a stop string
    LENGTH = "length"  # max_new_tokens or the model's context length
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"  # the request's own `timeout` ran out
    ERROR = "error"


class SamplingParams(Message):
    """How to sample one request; validated identically at the API and in the worker."""

    max_new_tokens: int = Field(default=64, ge=0, le=1_000_000, description="0: the prompt only (echo)")
    temperature: float = Field(default=1.0, ge=0.0, le=100.0)
    top_k: int = Field(default=0, ge=0, description="0 disables top-k")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    ignore_eos: bool = False  # keep generating past the EOS token (benchmarks, tests)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    min_tokens: int = Field(default=0, ge=0, le=1_000_000)
    logprobs: int | None = Field(default=None, ge=0, le=20, description="top log-probabilities per token")
    stop: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=8
    )
    # OpenAI's penalties, on the output's tokens: logit - frequency * count - presence * (count > 0).
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[Annotated[int, Field(ge=0)], Annotated[float, Field(ge=-100.0, le=100.0)]] = Field(
        default_factory=dict, max_length=300, description="token id -> added to its logit"
    )
    prompt_logprobs: int | None = Field(
        default=None, ge=0, le=20, description="the prompt tokens' log-probabilities too (echo)"
    )
    json_schema: dict[str, Any] | None = Field(
        default=None, description="constrain the output to JSON valid under this schema"
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("logit_bias", mode="before")
    @classmethod
    def _token_id_keys(cls, value: object) -> object:
        """JSON object keys are strings: "42" is token id 42 (also under strict validation)."""
        if isinstance(value, dict):
            return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
        return value


class ChatMessage(Message):
    """One chat message for the chat template; tool calls and tool results as agents send them."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: list[dict[str, Any]] | None = None  # an assistant's calls, in OpenAI's shape
    tool_call_id: str | None = None  # the call a tool message answers
    name: str | None = None

    def for_template(self) -> dict[str, Any]:
        """As chat templates read messages: the fields that are set."""
        return self.model_dump(exclude_none=True)


class GenerationRequest(Message):
    """A prompt (or chat messages, rendered by the worker's chat template) to generate from, stored in
    the request hash; the Celery task carries only its id."""

    v: Literal[1] = 1
    request_id: str
    model: str
    prompt: str = ""
    messages: list[ChatMessage] | None = None
    prompt_ids: list[int] | None = None  # a prompt given as token ids
    tools: list[dict[str, Any]] | None = None  # for the chat template, in OpenAI's shape (tool calling)
    params: SamplingParams
    created_at: float
    cancel_on_disconnect: bool = False  # cancel when a subscriber of its stream disconnects
    timeout_s: float | None = None  # generation ends with finish_reason "timeout" this long after created_at
    owner: str = ""  # who submitted it (an API key's id, or the client's address without keys): fair share
    charge: RateCharge | None = None  # what it reserved of its key's token budget

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> GenerationRequest:
        if bool(self.prompt) + bool(self.messages) + bool(self.prompt_ids) != 1:
            raise ValueError("exactly one of prompt, messages and prompt_ids must be given")
        return self


class Usage(Message):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        """Usage with its total filled in."""
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class RequestState(Message):
    """The mutable part of a request's hash; every field but status is filled in as the request runs."""

    v: Literal[1] = 1
    status: RequestStatus = RequestStatus.QUEUED
    worker_id: str | None = None
    started_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    error: str | None = None
    largest_batch: int | None = None  # the most requests that shared a decode step with this one
