"""The guard every request passes before its view: who is calling, and may they call this route?

Routes need a key unless marked `public` (the health probes, Swagger UI's files); `admin_only` routes
need an admin key. A route added later without a mark needs a user key: forgetting cannot open it.
Browsers that cannot set headers (EventSource, WebSocket) send the session cookie that
POST /v1/auth/session sets; a state-changing request carried by that cookie must come from an
allowed origin (CSRF).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from api import context
from api.auth import store
from api.auth.principal import Principal
from api.errors import error_response
from api.route_docs import is_static_endpoint

View = TypeVar("View", bound=Callable[..., Any])
SESSION_COOKIE = "tw_session"
_ACCESS = "__access__"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def public(view: View) -> View:
    """Mark a route as open to anyone, key or not."""
    setattr(view, _ACCESS, "public")
    return view


def admin_only(view: View) -> View:
    """Mark a route as an admin key's alone."""
    setattr(view, _ACCESS, "admin")
    return view


def access_of(endpoint: str | None) -> str:
    """ "public", "admin" or "user" (the default) for an endpoint."""
    if endpoint is not None and is_static_endpoint(endpoint):
        return "public"
    view = current_app.view_functions.get(endpoint or "")
    return str(getattr(view, _ACCESS, "user"))


def _credentials() -> tuple[str | None, bool]:
    """(the secret or session key id presented, whether it came as the session cookie)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _authenticate() -> Response | None:
    settings, r = context.settings(), context.redis_client()
    address = request.remote_addr or "unknown"
    access = "public" if request.method == "OPTIONS" else access_of(request.endpoint)  # CORS preflights
    if not settings.keys_required:
        g.principal = Principal(key=None, address=address)
        return None
    secret, by_cookie = _credentials()
    key = None
    if secret and by_cookie:
        key_id = store.session_key_id(r, secret)
        key = store.by_id(r, key_id, settings.admin_api_key) if key_id else None
    elif secret:
        key = store.lookup(r, secret, settings.admin_api_key)
    if key is None:
        if access == "public":
            g.principal = None
            return None
        why = "the API key is unknown or revoked" if secret else "an API key is required"
        response = error_response(401, f"{why}: send Authorization: Bearer <key>", code="unauthorized")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    g.principal = Principal(key=key, address=address)
    if by_cookie and request.method not in _SAFE_METHODS and not _same_origin(settings.cors_origins):
        return error_response(403, "a cross-site request cannot use this session", code="forbidden_origin")
    if access == "admin" and key.role != "admin":
        return error_response(403, "this route needs an admin key", code="forbidden")
    return None


def _same_origin(allowed: tuple[str, ...]) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    return origin == request.host_url.rstrip("/") or origin in allowed


def install(app: Flask) -> None:
    """Authenticate every request before its view runs."""
    app.before_request(_authenticate)
