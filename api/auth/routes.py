"""Keys and sessions over HTTP: admins create, list and revoke keys; any key opens a browser session."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth import store
from api.auth.guard import SESSION_COOKIE, admin_only
from api.auth.principal import current
from api.auth.schemas import CreateKeyBody
from api.bodies import parse_body
from api.errors import ApiError
from api.route_docs import documented

bp = Blueprint("auth", __name__, url_prefix="/v1")


@bp.get("/keys")
@admin_only
@documented(errors=(401, 403))
def list_keys() -> Response:
    """Every API key: id, name, role and limits (never a secret)."""
    return jsonify({"keys": [k.model_dump(exclude={"v"}) for k in store.list_keys(context.redis_client())]})


@bp.post("/keys")
@admin_only
@documented(
    body=CreateKeyBody, success=201, description="the key, with its secret shown once", errors=(401, 403)
)
def create_key() -> tuple[Response, int]:
    """Create a key; its secret is in this answer and nowhere else."""
    body = parse_body(CreateKeyBody)
    secret, key = store.create(context.redis_client(), body.name, body.role, body.rpm, body.tpm)
    return jsonify({**key.model_dump(exclude={"v"}), "secret": secret}), 201


@bp.delete("/keys/<key_id>")
@admin_only
@documented(description="revoked", errors=(401, 403, 404))
def revoke_key(key_id: str) -> Response:
    """Revoke a key: every later request with it, or with a session it opened, answers 401."""
    if not store.revoke(context.redis_client(), key_id):
        raise ApiError(404, f"no key {key_id!r}", param="key_id", code="not_found")
    return jsonify({"key_id": key_id, "revoked": True})


@bp.post("/auth/session")
@documented(description="the session cookie is set", errors=(401,))
def open_session() -> Response:
    """Open a browser session for the key in Authorization: an HttpOnly, SameSite=Strict cookie that
    EventSource and WebSocket send by themselves, so the key never sits in a URL or an access log."""
    principal = current()
    s = context.settings()
    response = jsonify(_who())
    if principal.key is not None:
        token = store.open_session(context.redis_client(), principal.key.key_id, s.session_ttl_s)
        response.set_cookie(
            SESSION_COOKIE, token, max_age=s.session_ttl_s, httponly=True, samesite="Strict",
            secure=request.is_secure, path="/",
        )  # fmt: skip
    return response


@bp.delete("/auth/session")
@documented(description="the session is closed")
def close_session() -> Response:
    """Close this browser's session."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        store.close_session(context.redis_client(), token)
    response = jsonify({"closed": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@bp.get("/auth/whoami")
@documented()
def whoami() -> Response:
    """The key this request uses: id, name, role and limits (keys off: an anonymous admin)."""
    return jsonify(_who())


def _who() -> dict[str, object]:
    key = current().key
    if key is None:
        return {"key_id": None, "name": "anonymous", "role": "admin", "keys_required": False}
    return {**key.model_dump(exclude={"v", "created_at"}), "keys_required": True}
