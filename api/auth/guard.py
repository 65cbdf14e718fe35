"""The guard every request passes before its view: who is calling, and may they call this route?

Routes need a key unless marked `public` (the health probes, Swagger UI's files); `admin_only` routes
need an admin key. A route added later without a mark needs a user key: forgetting cannot open it.
Browsers that cannot set headers (EventSource, WebSocket) send the session cookie that
POST /v1/auth/session sets; a state-changing request or a WebSocket handshake carried by that cookie
must come from an allowed origin (CSRF; a page on another site may open a WebSocket with our cookie).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from api import context
from api.auth import sessions, store
from api.auth.principal import Principal
from api.errors import error_response
from api.route_docs import is_static_endpoint
from shared.messages import ApiKey

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
    """(the secret or session token presented, whether it came as the session cookie)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _key_of(credential: str, by_session: bool) -> ApiKey | None:
    """The key a credential (a SHA-256) stands for now, or None."""
    r, admin_secret = context.redis_client(), context.settings().admin_api_key
    if by_session:
        return sessions.key_of(r, credential, admin_secret)
    return store.by_digest(r, credential, admin_secret)


def is_still_valid(principal: Principal) -> bool:
    """Whether the credential a request came with still stands for its key (a long stream asks this
    again and again: revoking the key, rotating its secret or closing the session ends it)."""
    if principal.key is None or principal.credential is None:
        return True  # keys are off
    key = _key_of(principal.credential, principal.by_session)
    return key is not None and key.key_id == principal.key.key_id


def access_check() -> Callable[[], bool] | None:
    """For a long stream: a check that this request's credential still stands (None with keys off)."""
    principal: Principal | None = g.get("principal")
    if principal is None or principal.key is None:
        return None
    return functools.partial(is_still_valid, principal)


def _authenticate() -> Response | None:
    settings = context.settings()
    address = request.remote_addr or "unknown"
    access = "public" if request.method == "OPTIONS" else access_of(request.endpoint)  # CORS preflights
    if not settings.keys_required:
        g.principal = Principal(key=None, address=address)
        return None
    secret, by_cookie = _credentials()
    credential = store.digest(secret) if secret else None
    key = _key_of(credential, by_cookie) if credential else None
    if key is None:
        if access == "public":
            g.principal = None
            return None
        why = "the API key is unknown or revoked" if secret else "an API key is required"
        response = error_response(401, f"{why}: send Authorization: Bearer <key>", code="unauthorized")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    g.principal = Principal(key=key, address=address, credential=credential, by_session=by_cookie)
    if by_cookie and _changes_state() and not _same_origin(settings.cors_origins):
        return error_response(403, "a cross-site request cannot use this session", code="forbidden_origin")
    if access == "admin" and key.role != "admin":
        return error_response(403, "this route needs an admin key", code="forbidden")
    return None


def _changes_state() -> bool:
    """A method that may change state, or a WebSocket handshake (a GET that opens a channel: browsers let
    any page open one to us, with our cookie)."""
    return request.method not in _SAFE_METHODS or request.headers.get("Upgrade", "").lower() == "websocket"


def _same_origin(allowed: tuple[str, ...]) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    return origin == request.host_url.rstrip("/") or origin in allowed


def install(app: Flask) -> None:
    """Authenticate every request before its view runs."""
    app.before_request(_authenticate)
