"""Keys and sessions over HTTP: admins create, list and revoke keys; any key opens a browser session."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth import sessions, store
from api.auth.guard import SESSION_COOKIE, admin_only
from api.auth.principal import current
from api.auth.revocation import revoke_key as end_key
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
@documented(description="revoked", errors=(400, 401, 403, 404))
def revoke_key(key_id: str) -> Response:
    """Revoke a key: every later request with it answers 401; its sessions end, its queued and running
    requests are cancelled, and its open streams end with a `key_revoked` error within a second."""
    if key_id == store.BOOTSTRAP_ID:
        raise ApiError(
            400,
            "the key 'admin' is ADMIN_API_KEY: give ADMIN_API_KEY a new value and restart the API to "
            "revoke it (its sessions end with it)",
            param="key_id",
            code="bootstrap_key",
        )
    ended = end_key(context.redis_client(), key_id, context.settings().stream_ttl_s)
    if ended is None:
        raise ApiError(404, f"no key {key_id!r}", param="key_id", code="not_found")
    return jsonify({"key_id": key_id, "revoked": True, **ended})


@bp.post("/auth/session")
@documented(description="the session cookie is set", errors=(401, 403))
def open_session() -> Response:
    """Open a browser session for the key in Authorization: an HttpOnly, SameSite=Strict cookie that
    EventSource and WebSocket send by themselves, so the key never sits in a URL or an access log.

    The session lasts SESSION_TTL from now and no longer; a session cannot open another (send the key).
    """
    principal = current()
    s = context.settings()
    response = jsonify(_who())
    if principal.key is not None:
        if principal.by_session or principal.credential is None:
            raise ApiError(
                403, "a session cannot open another session: send the key as Authorization: Bearer",
                code="forbidden",
            )  # fmt: skip
        token = sessions.open_session(
            context.redis_client(), principal.key.key_id, principal.credential, s.session_ttl_s
        )
        response.set_cookie(
            SESSION_COOKIE, token, max_age=s.session_ttl_s, httponly=True, samesite="Strict",
            secure=request.is_secure, path="/",
        )  # fmt: skip
    return response


@bp.delete("/auth/session")
@documented(description="the session is closed")
def close_session() -> Response:
    """Close this browser's session (it stops working at once, on every API process)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        sessions.close_session(context.redis_client(), token)
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
