"""Request bodies of the OpenAI-compatible endpoints: OpenAI's fields, plus vLLM's sampling extras.

`null` for an optional field means its default. OpenAI's fields whose value changes nothing here are
accepted (api/openai/neutral.py); any other unknown field is refused with a 400 that names it, so
nothing is silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from api.errors import ApiError
from api.openai.chat_messages import ChatMessageIn
from api.openai.neutral import OpenAIBody, drop_neutral, not_supported, without_nulls
from api.openai.response_format import ResponseFormat, checked_schema
from api.openai.tools import ToolChoice, ToolMode, ToolSpec, output_schema, tool_mode
from shared.messages import SamplingParams

Prompt = str | list[int]  # one prompt: text, or token ids


class StreamOptions(OpenAIBody):
    include_usage: bool = False
    continuous_usage_stats: bool = False  # vLLM's: usage on every chunk


class _OpenAIRequest(OpenAIBody):
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
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = Field(default=None, description="token id -> bias, -100 to 100")
    response_format: ResponseFormat | None = None
    # vLLM's extra sampling fields
    top_k: int | None = Field(default=None, ge=-1, description="-1 or 0 disables")
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    min_tokens: int | None = Field(default=None, ge=0)
    ignore_eos: bool | None = None

    DEFAULT_MAX_TOKENS: ClassVar[int] = 16
    _checked_schema: tuple[dict[str, Any] | None] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _neutral_fields(cls, data: object) -> object:
        return drop_neutral(without_nulls(data), set(cls.model_fields)) if isinstance(data, dict) else data

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def continuous_usage(self) -> bool:
        # as vLLM: only together with include_usage
        return self.include_usage and bool(self.stream_options and self.stream_options.continuous_usage_stats)

    def num_logprobs(self) -> int | None:
        return None

    def num_prompt_logprobs(self) -> int | None:
        return None

    def sampling(self, choice: int) -> SamplingParams:
        """Sampling for one choice; with a seed, each choice gets its own (seed + choice)."""
        return SamplingParams(
            max_new_tokens=self.DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens,
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
            frequency_penalty=self.frequency_penalty or 0.0,
            presence_penalty=self.presence_penalty or 0.0,
            logit_bias=self.logit_bias or {},  # type: ignore[arg-type]  # its keys are checked there
            prompt_logprobs=self.num_prompt_logprobs(),
            json_schema=self.output_schema(),
        )

    def output_schema(self) -> dict[str, Any] | None:
        """The JSON schema the output is held to, if any; checked once per request (every choice of
        every prompt has the same)."""
        if self._checked_schema is None:
            self._checked_schema = (self._output_schema(),)
        return self._checked_schema[0]

    def _output_schema(self) -> dict[str, Any] | None:
        return self.response_format.checked_schema() if self.response_format else None

    @property
    def schema_param(self) -> str:
        """The field a bad output schema is reported under."""
        return "response_format.json_schema"


class CompletionRequest(_OpenAIRequest):
    """POST /v1/completions."""

    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="a string, a list of strings, token ids, or a list of token-id lists"
    )
    max_tokens: int | None = Field(default=None, ge=0, description="0 with echo: the prompt's logprobs only")
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = Field(default=False, description="the prompt before the completion (with its logprobs)")
    best_of: int | None = Field(default=None, ge=1, description="only equal to n")

    @model_validator(mode="after")
    def _echo_and_best_of(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of != self.n:
            raise not_supported("best_of", self.best_of, " (only best_of equal to n)")
        if self.max_tokens == 0 and not self.echo:
            raise ApiError(
                400, "max_tokens: 0 only with echo (the prompt alone)", param="max_tokens", code="too_small"
            )
        return self

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: object) -> list[str] | list[list[int]]:
        """One or more prompts, all text or all token ids, as a list; a clear message for anything else."""
        if isinstance(value, str) or (isinstance(value, list) and value and all(map(_is_token_id, value))):
            value = [value]
        if not isinstance(value, list) or not value:
            raise _bad_prompt()
        if all(isinstance(p, str) for p in value):
            if not all(value):
                raise PydanticCustomError("empty_prompt", "every prompt must be a non-empty string")
            return value
        if all(isinstance(p, list) and p and all(_is_token_id(t) for t in p) for p in value):
            return value
        raise _bad_prompt()

    def prompts(self) -> list[Prompt]:
        """Each prompt, as text or token ids."""
        prompts: list[Prompt] = list(self.prompt)  # type: ignore[arg-type]  # a list: see _prompt_shape
        return prompts

    def num_logprobs(self) -> int | None:
        return self.logprobs

    def num_prompt_logprobs(self) -> int | None:
        # echo always gathers the prompt's tokens (their text, for a prompt given as token ids)
        return (self.logprobs or 0) if self.echo else None


def _is_token_id(value: object) -> bool:
    return type(value) is int and value >= 0


def _bad_prompt() -> PydanticCustomError:
    return PydanticCustomError(
        "invalid_prompt",
        "prompt must be a non-empty string, a list of them, a non-empty list of token ids (integers "
        "from 0), or a list of such lists (not a mix)",
    )


class ChatCompletionRequest(_OpenAIRequest):
    """POST /v1/chat/completions; messages are rendered with the model's chat template."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[ToolSpec] | None = Field(default=None, max_length=128)
    parallel_tool_calls: bool = Field(default=True, description="false: at most one tool call")
    tool_choice: ToolChoice | None = Field(
        default=None, description='"none", "auto" (default), "required" or a name'
    )

    DEFAULT_MAX_TOKENS: ClassVar[int] = 512

    @field_validator("tools")
    @classmethod
    def _unique_tool_names(cls, tools: list[ToolSpec] | None) -> list[ToolSpec] | None:
        """A tool is called by its name, so two tools of one name could not be told apart."""
        names = [t.function.name for t in tools or []]
        if repeated := sorted({n for n in names if names.count(n) > 1}):
            raise PydanticCustomError(
                "duplicate_tool_name", "tool names must be unique; given more than once: {names}",
                {"names": ", ".join(repeated)},
            )  # fmt: skip
        return tools

    @model_validator(mode="after")
    def _one_output_rule(self) -> ChatCompletionRequest:
        held = self.tool_mode in ("named", "required")
        if held and self.response_format is not None and self.response_format.type != "text":
            raise not_supported(
                "response_format", self.response_format.type, f" with tool_choice {self.tool_mode!r}"
            )
        return self

    @property
    def tool_mode(self) -> ToolMode:
        return tool_mode(self.tools, self.tool_choice)

    def template_tools(self) -> list[dict[str, Any]] | None:
        """The tools as the chat template takes them (none when the model may not call them)."""
        if self.tool_mode == "none" or not self.tools:
            return None
        return [t.model_dump(exclude_none=True) for t in self.tools]

    def _output_schema(self) -> dict[str, Any] | None:
        schema = output_schema(self.tool_mode, self.tools or [], self.tool_choice, self.parallel_tool_calls)
        return checked_schema(schema, param="tools") if schema is not None else super()._output_schema()

    @property
    def schema_param(self) -> str:
        return "tools" if self.tool_mode in ("named", "required") else super().schema_param

    def num_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def sampling(self, choice: int) -> SamplingParams:
        if self.max_completion_tokens is not None and self.max_tokens is None:
            return self.model_copy(update={"max_tokens": self.max_completion_tokens}).sampling(choice)
        return super().sampling(choice)
