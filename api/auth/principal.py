"""The caller of the current request: an API key, or (with keys off) an anonymous admin at an address."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g

from shared.messages import ApiKey, GenerationRequest


@dataclass(frozen=True)
class Principal:
    key: ApiKey | None  # None when keys are off (no ADMIN_API_KEY): everyone is an admin, as before
    address: str
    # The SHA-256 of what the request presented: the key's secret, or the session cookie when
    # by_session. A long stream checks it again (guard.is_still_valid): a revoked key ends there too.
    credential: str | None = None
    by_session: bool = False

    @property
    def is_admin(self) -> bool:
        return self.key is None or self.key.role == "admin"

    @property
    def owner(self) -> str:
        """Whose requests these are: the key's id, else the client's address (fair share without keys)."""
        return self.key.key_id if self.key is not None else f"addr:{self.address}"

    def may_see(self, request: GenerationRequest) -> bool:
        """Admins see every request; a key sees its own."""
        return self.is_admin or request.owner == self.owner


def current() -> Principal:
    """The principal the guard set for this request (only public routes have none)."""
    principal: Principal | None = g.principal
    if principal is None:
        raise RuntimeError("a public route asked who is calling")
    return principal
