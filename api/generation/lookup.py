"""Find a stored request for a route, or answer 404 saying it is unknown or expired."""

from __future__ import annotations

from api import context
from api.auth.principal import current
from api.errors import ApiError
from shared import bus


def load_or_404(request_id: str) -> bus.StoredRequest:
    """The stored request; 404 when it is unknown, has expired, or is another key's (the same answer,
    so that ids cannot be probed)."""
    stored = bus.load_request(context.redis_client(), request_id)
    if stored is None or not current().may_see(stored.request):
        ttl = context.settings().stream_ttl_s
        message = f"request {request_id} is unknown or has expired (requests are kept {ttl} s after they end)"
        raise ApiError(404, message, param="id", code="not_found")
    return stored
