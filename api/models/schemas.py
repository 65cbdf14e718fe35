"""Bodies of the model-management routes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
