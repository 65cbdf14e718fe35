"""The body of a generation request, validated by pydantic before anything is enqueued."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from api.openai.response_format import checked_schema
from shared.messages import SamplingParams


class SubmitBody(SamplingParams):
    """Body of POST /v1/requests, /v1/generate and /v1/generate_nobatch."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    prompt: str = Field(min_length=1, description="at most MAX_PROMPT_CHARS characters")
    max_new_tokens: int = Field(default=64, ge=1, le=1_000_000)  # 0 (echo) is for /v1/completions
    model: str | None = Field(default=None, min_length=1, max_length=256)
    cancel_on_disconnect: bool = False
    timeout: float | None = Field(default=None, gt=0, le=86_400, description="seconds, from submission")

    def sampling(self) -> SamplingParams:
        if self.json_schema is not None:
            checked_schema(self.json_schema, param="json_schema")
        return SamplingParams.model_validate(
            self.model_dump(exclude={"prompt", "model", "cancel_on_disconnect", "timeout"})
        )
