"""Find a stored request for a route, or answer 404 saying it is unknown or expired."""

from __future__ import annotations

from api import context
from api.errors import ApiError
from shared import bus


def load_or_404(request_id: str) -> bus.StoredRequest:
    """The stored request; 404 when it is unknown or has expired."""
    stored = bus.load_request(context.redis_client(), request_id)
    if stored is None:
        ttl = context.settings().stream_ttl_s
        message = f"request {request_id} is unknown or has expired (requests are kept {ttl} s after they end)"
        raise ApiError(404, message, param="id", code="not_found")
    return stored
