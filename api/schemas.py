"""Request bodies the API accepts, validated by pydantic before anything is enqueued."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import SamplingParams


class SubmitBody(SamplingParams):
    """Body of POST /v1/requests, /v1/generate and /v1/generate_nobatch."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    prompt: str = Field(min_length=1, max_length=200_000)
    model: str | None = Field(default=None, min_length=1, max_length=256)
    cancel_on_disconnect: bool = False
    timeout: float | None = Field(default=None, gt=0, le=86_400, description="seconds, from submission")

    def sampling(self) -> SamplingParams:
        return SamplingParams.model_validate(
            self.model_dump(exclude={"prompt", "model", "cancel_on_disconnect", "timeout"})
        )


class LoadModelBody(BaseModel):
    """Body of POST /v1/models/load."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str = Field(
        min_length=1, max_length=512, description="a Hub id (owner/name) or a path under MODEL_DIR"
    )
    workers: int = Field(default=1, ge=1, le=1024, description="how many workers should serve it")


class UnloadModelBody(BaseModel):
    """Body of POST /v1/models/unload."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str = Field(min_length=1, max_length=512)
