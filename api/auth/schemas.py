"""Bodies of the key-management routes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import Role


class CreateKeyBody(BaseModel):
    """Body of POST /v1/keys."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(min_length=1, max_length=100, description="who or what the key is for")
    role: Role = "user"
    rpm: int | None = Field(
        default=None, ge=1, le=1_000_000, description="requests per minute (none: no limit)"
    )
    tpm: int | None = Field(default=None, ge=1, le=10**9, description="tokens per minute (none: no limit)")
