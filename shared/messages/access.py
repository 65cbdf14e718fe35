"""Who may use the API: an API key's record (its secret is stored only as a SHA-256), and what a request
was charged against its key's limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.messages.base import Message

Role = Literal["admin", "user"]


class ApiKey(Message):
    """An API key: a name, a role, and optional per-minute limits (None: unlimited)."""

    v: Literal[1] = 1
    key_id: str  # public: shown in listings, owner of requests, label of rate limits
    name: str
    role: Role = "user"
    rpm: int | None = Field(default=None, ge=1)  # requests per minute
    tpm: int | None = Field(default=None, ge=1)  # tokens per minute: prompt + max_new_tokens reserved
    created_at: float


class BrowserSession(Message):
    """A browser session (the cookie's SHA-256 names it): it stands for one key while that key keeps the
    secret it had when the session opened, until expires_at, whatever Redis's TTL says."""

    v: Literal[1] = 1
    key_id: str
    key_digest: str  # the SHA-256 of the key's secret at opening: a rotated or revoked secret ends it
    created_at: float
    expires_at: float


class RateCharge(Message):
    """Tokens reserved against a key's per-minute budget at submission; the unused part is given back
    when the request ends, if its minute is still running."""

    key_id: str
    window: int  # the unix minute the tokens were reserved in
    tokens: int = Field(ge=0)
