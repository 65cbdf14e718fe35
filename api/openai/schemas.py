"""Request bodies of the OpenAI-compatible endpoints: OpenAI's fields, plus vLLM's sampling extras.

Unknown fields are refused (a 400 naming the field), so nothing is silently ignored.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.messages import ChatMessage, SamplingParams

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


class StreamOptions(BaseModel):
    model_config = _CONFIG
    include_usage: bool = False


class _OpenAIRequest(BaseModel):
    model_config = _CONFIG

    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=8, description="choices, each its own sequence in the batch")
    stop: (
        str | Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=8)] | None
    ) = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    # vLLM's extra sampling fields
    top_k: int | None = Field(default=None, ge=-1, description="-1 or 0 disables")
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    min_tokens: int | None = Field(default=None, ge=0)
    ignore_eos: bool | None = None

    DEFAULT_MAX_TOKENS: ClassVar[int] = 16

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def num_logprobs(self) -> int | None:
        return None

    def sampling(self, choice: int) -> SamplingParams:
        """Sampling for one choice; with a seed, each choice gets its own (seed + choice)."""
        return SamplingParams(
            max_new_tokens=self.max_tokens or self.DEFAULT_MAX_TOKENS,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=max(0, self.top_k or 0),
            seed=None if self.seed is None else self.seed + choice,
            stop=[self.stop] if isinstance(self.stop, str) else (self.stop or []),
            min_p=self.min_p or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            min_tokens=self.min_tokens or 0,
            ignore_eos=bool(self.ignore_eos),
            logprobs=self.num_logprobs(),
        )


class CompletionRequest(_OpenAIRequest):
    """POST /v1/completions."""

    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=5)

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        prompts = [value] if isinstance(value, str) else value
        if not prompts or not all(prompts):
            raise ValueError("every prompt must be a non-empty string")
        return value

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def num_logprobs(self) -> int | None:
        return self.logprobs


class ContentPart(BaseModel):
    model_config = _CONFIG
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    model_config = _CONFIG
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None

    def to_message(self) -> ChatMessage:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=text)


class ChatCompletionRequest(_OpenAIRequest):
    """POST /v1/chat/completions; messages are rendered with the model's chat template."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    DEFAULT_MAX_TOKENS: ClassVar[int] = 512

    def num_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def sampling(self, choice: int) -> SamplingParams:
        if self.max_completion_tokens is not None and self.max_tokens is None:
            return self.model_copy(update={"max_tokens": self.max_completion_tokens}).sampling(choice)
        return super().sampling(choice)
